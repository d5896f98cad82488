namespace Balancer.Affinity;

/// <summary>
/// One session pinned to a backend, as replicated in the pool's affinity buckets
/// (<c>balancer-affinity-POOL-N</c>) and cached on every node.
/// </summary>
public sealed record AffinityEntry(string Backend, DateTimeOffset ExpiresAt);
