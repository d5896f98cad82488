using System.Runtime.CompilerServices;
using Balancer.Management;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Client;

/// <summary>The <see cref="IBalancerClient"/> of a node, over its pool registry and event feed.</summary>
internal sealed class BalancerClient(PoolRegistry pools, EventFeed events) : IBalancerClient
{
    public IReadOnlyCollection<string> Pools => pools.Pools.Keys.ToList();

    public BackendLease Select(string pool, string? affinityKey = null) => Selection(pool, affinityKey).Next();

    public BackendSelection Selection(string pool, string? affinityKey = null) => BackendSelection.Start(Handle(pool), affinityKey);

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
