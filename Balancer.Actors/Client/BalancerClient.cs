using System.Runtime.CompilerServices;
using Balancer.Management;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Client;

/// <summary>The <see cref="IBalancerClient"/> of a node, over its pool registry and event feed.</summary>
internal sealed class BalancerClient(PoolRegistry pools, EventFeed events, Membership.ClusterMembership? membership = null) : IBalancerClient
{
    public IReadOnlyCollection<string> Pools => pools.Pools.Keys.ToList();

    public BackendLease Select(string pool, string? affinityKey = null) => Selection(pool, affinityKey).Next();

    public BackendSelection Selection(string pool, string? affinityKey = null) => BackendSelection.Start(Handle(pool), affinityKey);

    public PoolSnapshot View(string pool) => Handle(pool).Snapshot;

    public async IAsyncEnumerable<NotableEvent> Events([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // Subscribed first, so that no change falls between the current state and the stream.
        using var reader = events.Subscribe();
        foreach (var current in CurrentState())
        {
            yield return current;
        }
        while (await reader.Events.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            while (reader.Events.TryRead(out var notable))
            {
                yield return notable;
            }
        }
    }

    private IEnumerable<NotableEvent> CurrentState()
    {
        var cluster = membership?.Current();
        var self = cluster?.Self ?? "";
        var now = DateTimeOffset.UtcNow;
        foreach (var member in cluster?.Members.Where(m => m.Status == "up") ?? [])
        {
            yield return new NotableEvent(now, "member-up", $"member {member.Address} is up, {member.Duty.ToString().ToLowerInvariant()} (current state)", self, Member: member.Address);
        }
        foreach (var handle in pools.Pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            foreach (var backend in handle.Snapshot.Backends)
            {
                var reason = backend.HealthReason.Length > 0 ? $": {backend.HealthReason}" : "";
                yield return new NotableEvent(now, backend.Healthy ? "backend-up" : "backend-down",
                    $"backend {backend.Pool}/{backend.Name} is {(backend.Healthy ? "UP" : "DOWN")}{reason}, admin state {backend.AdminState.ToString().ToLowerInvariant()} (current state)",
                    self, backend.Pool, backend.Name);
            }
        }
    }

    private PoolHandle Handle(string pool) => pools.Find(pool)
        ?? throw new KeyNotFoundException($"no pool \"{pool}\" (pools: {string.Join(", ", pools.Pools.Keys.Order(StringComparer.Ordinal))})");
}
