using System.Collections.Concurrent;
using System.Net;

namespace Balancer.Frontends;

/// <summary>
/// Caps the connections one client address holds open on a frontend (<c>max-connections-per-client</c>),
/// so a single host flooding it cannot take the slots every other client needs.
/// </summary>
internal sealed class ClientConnectionLimit(int perClient, FrontendCounters counters)
{
    private readonly ConcurrentDictionary<IPAddress, int> _open = new();

    /// <summary>A ticket for one more connection from <paramref name="remote"/> (dispose it when the connection ends), or null when the client is at its limit.</summary>
    public IDisposable? Admit(EndPoint? remote)
    {
        if (perClient <= 0 || remote is not IPEndPoint { Address: var address })
        {
            return Ticket.None;
        }
        if (_open.AddOrUpdate(address, 1, (_, count) => count + 1) > perClient)
        {
            Release(address);
            counters.CountRefusedPerClient();
            return null;
        }
        return new Ticket(this, address);
    }

    private void Release(IPAddress address)
    {
        // Remove the entry at zero so the table holds only clients with open connections.
        if (_open.AddOrUpdate(address, 0, (_, count) => count - 1) <= 0)
        {
            _open.TryRemove(KeyValuePair.Create(address, 0));
        }
    }

    private sealed class Ticket(ClientConnectionLimit? limit, IPAddress? address) : IDisposable
    {
        public static readonly Ticket None = new(null, null);
        private int _released;

        public void Dispose()
        {
            if (limit is not null && Interlocked.Exchange(ref _released, 1) == 0)
            {
                limit.Release(address!);
            }
        }
    }
}
