using System.Collections.Concurrent;
using System.Net.Http;
using Balancer.Configuration;
using Balancer.Routing;

namespace Balancer.Health;

/// <summary>
/// The HTTP clients of a node's health checks: one per pool, speaking what the pool speaks to its
/// backends (<c>protocol</c>, <c>tls</c>), each opening a new connection for every check.
/// </summary>
internal sealed class ProbeClients : IDisposable
{
    private readonly ConcurrentDictionary<string, (HttpMessageInvoker Client, BackendTransport Transport)> _clients = new();

    /// <summary>The client and transport for checks of <paramref name="pool"/>'s backends.</summary>
    public (HttpMessageInvoker Client, BackendTransport Transport) For(PoolSettings pool)
    {
        // A reload that changed the pool's protocol or TLS gets a client of its own (a check opens
        // a connection each time, so the old client holds nothing worth closing).
        var key = $"{pool.Name}\n{pool.Protocol}\n{SettingsComparer.Fingerprint(pool.Tls ?? (object)"")}";
        return _clients.GetOrAdd(key, _ =>
        {
            var transport = new BackendTransport(pool);
            // Health checks have their own timeout; the connect must not end them sooner.
            return (new HttpMessageInvoker(transport.CreateHandler(TimeSpan.FromSeconds(10), forProbes: true)), transport);
        });
    }

    public void Dispose()
    {
        foreach (var (client, _) in _clients.Values)
        {
            client.Dispose();
        }
        _clients.Clear();
    }
}
