namespace Balancer.Affinity;

/// <summary>
/// One session pinned to a backend, as replicated in the pool's session buckets
/// (<c>balancer-sessions-POOL-N</c>) and cached on every node. A session is
/// <see cref="Established"/> once it came back for a second request: when a bucket is full, sessions
/// seen only once (a flood of made-up keys, scanners, one-shot clients) are evicted before it. An
/// entry with no backend records that an operator cleared the session: a removal alone would not
/// reach the nodes' caches, which only merge what they are sent, so the clearing is replicated like
/// a pin and swept at expiry. An entry is <see cref="Provisional"/> when a node pinned it while it
/// was outside its cluster (rejoining after the cluster removed it), could not see a majority of it
/// (the minority side of a partition, before the resolver acts), or could not read the cluster's
/// copy of the session: any entry pinned by a member that could wins over it, so a session
/// acknowledged by the cluster never moves to the choice of a node that could not see it.
/// </summary>
public sealed record AffinityEntry(string Backend, DateTimeOffset ExpiresAt, bool Established = false, bool Provisional = false)
{
    /// <summary>
    /// When the session expires, to the whole millisecond: that is what is replicated, and a node must
    /// hold exactly what its peers read from the wire or their buckets' digests would never agree.
    /// </summary>
    public DateTimeOffset ExpiresAt { get; } = DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAt.ToUnixTimeMilliseconds());

    /// <summary>The latest expiry a <see cref="DateTimeOffset"/> holds, in Unix ms: a later one read from the wire is malformed.</summary>
    internal static readonly long MaxExpiryUnixMilliseconds = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    /// <summary>The marker of a session cleared by an operator (established, so that it outranks the pins it clears).</summary>
    public static AffinityEntry Cleared(DateTimeOffset expiresAt) => new(string.Empty, expiresAt, Established: true);

    /// <summary>True for the marker of a cleared session.</summary>
    public bool IsCleared => Backend.Length == 0;

    /// <summary>
    /// True when this entry replaces <paramref name="held"/> for the same session on every node:
    /// pinned by a member before provisional, then established before not, then the later expiry,
    /// then (a tie) the ordinally greater backend.
    /// </summary>
    public bool Wins(AffinityEntry held) =>
        Provisional != held.Provisional ? !Provisional
        : Established != held.Established ? Established
        : ExpiresAt != held.ExpiresAt ? ExpiresAt > held.ExpiresAt
        : string.CompareOrdinal(Backend, held.Backend) > 0;
}
