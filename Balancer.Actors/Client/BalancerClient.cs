using System.Runtime.CompilerServices;
using Balancer.Management;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Client;

/// <summary>The <see cref="IBalancerClient"/> of a node, over its pool registry and event feed.</summary>
internal sealed class BalancerClient(PoolRegistry pools, EventFeed events) : IBalancerClient
{
    public IReadOnlyCollection<string> Pools => pools.Pools.Keys.ToList();

    public BackendLease Select(string pool, string? affinityKey = null)
    {
        var attempted = new AttemptedBackends();
        return Select(pool, affinityKey, ref attempted);
    }

    public BackendLease Select(string pool, string? affinityKey, ref AttemptedBackends attempted)
    {
        var handle = Handle(pool);
        var snapshot = handle.Snapshot;
        var request = new RoutingRequest(null);
        Backend? pinned = null;
        var moved = false;
        if (affinityKey is not null && !attempted.PinnedTried)
        {
            if (handle.Affinity is { } table)
            {
                var name = table.Find(affinityKey);
                pinned = snapshot.FindForSession(name);
                if (pinned is null)
                {
                    // New, or its backend went away: every node picks the same one for the key.
                    pinned = snapshot.RendezvousFor(affinityKey);
                    moved = pinned is not null;
                }
            }
            else
            {
                pinned = snapshot.RendezvousFor(affinityKey);
            }
        }
        var backend = snapshot.Select(in request, ref attempted, pinned);
        if (backend is null)
        {
            return default;
        }
        if (moved && backend == pinned)
        {
            // The first call does not wait for replication (write = majority waits only on the proxy path).
            _ = handle.Affinity!.Pin(affinityKey!, backend.Name);
        }
        backend.Counters.Start();
        return new BackendLease(backend);
    }

    public PoolSnapshot View(string pool) => Handle(pool).Snapshot;

    public async IAsyncEnumerable<NotableEvent> Events([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var reader = events.Subscribe();
        while (await reader.Events.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            while (reader.Events.TryRead(out var notable))
            {
                yield return notable;
            }
        }
    }

    private PoolHandle Handle(string pool) => pools.Find(pool)
        ?? throw new KeyNotFoundException($"no pool \"{pool}\" (pools: {string.Join(", ", pools.Pools.Keys.Order(StringComparer.Ordinal))})");
}
