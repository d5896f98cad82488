namespace Balancer.Affinity;

/// <summary>
/// One session pinned to a backend, as replicated in the pool's affinity buckets
/// (<c>balancer-affinity-POOL-N</c>) and cached on every node. An entry with no backend records
/// that an operator cleared the session: a removal alone would not reach the nodes' caches,
/// which only merge what they are sent, so the clearing is replicated like a pin and swept at expiry.
/// </summary>
public sealed record AffinityEntry(string Backend, DateTimeOffset ExpiresAt)
{
    /// <summary>
    /// When the session expires, to the whole millisecond: that is what is replicated, and a node must
    /// hold exactly what its peers read from the wire or their buckets' digests would never agree.
    /// </summary>
    public DateTimeOffset ExpiresAt { get; } = DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAt.ToUnixTimeMilliseconds());

    /// <summary>The latest expiry a <see cref="DateTimeOffset"/> holds, in Unix ms: a later one read from the wire is malformed.</summary>
    internal static readonly long MaxExpiryUnixMilliseconds = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    /// <summary>The marker of a session cleared by an operator.</summary>
    public static AffinityEntry Cleared(DateTimeOffset expiresAt) => new(string.Empty, expiresAt);

    /// <summary>True for the marker of a cleared session.</summary>
    public bool IsCleared => Backend.Length == 0;
}
