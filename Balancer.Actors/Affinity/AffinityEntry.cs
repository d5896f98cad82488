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
/// <para>
/// A value of 16 bytes (the backend's name, shared by every session of that backend, and one word
/// holding the expiry in Unix ms and both flags), so that a bucket of sessions is one flat array.
/// </para>
/// </summary>
public readonly struct AffinityEntry : IEquatable<AffinityEntry>
{
    private const long EstablishedBit = 1L << 62;
    private const long ProvisionalBit = 1L << 61;
    private const long ExpiryMask = (1L << 48) - 1;

    private readonly string? _backend;
    private readonly long _packed;

    /// <param name="Backend">The backend's name; empty for an operator's clear.</param>
    /// <param name="ExpiresAt">When the session expires (kept to the whole millisecond).</param>
    /// <param name="Established">The session came back for a second request.</param>
    /// <param name="Provisional">Pinned by a node that could not act as a member of its cluster.</param>
    public AffinityEntry(string Backend, DateTimeOffset ExpiresAt, bool Established = false, bool Provisional = false)
        : this(Backend, ExpiresAt.ToUnixTimeMilliseconds(), Established, Provisional)
    {
    }

    internal AffinityEntry(string backend, long expiresAtUnixMilliseconds, bool established, bool provisional)
    {
        _backend = backend;
        _packed = Math.Clamp(expiresAtUnixMilliseconds, 0, MaxExpiryUnixMilliseconds) | (established ? EstablishedBit : 0) | (provisional ? ProvisionalBit : 0);
    }

    /// <summary>The backend the session is pinned to; empty for the marker of a cleared session.</summary>
    public string Backend => _backend ?? string.Empty;

    /// <summary>
    /// When the session expires, to the whole millisecond: that is what is replicated, and a node must
    /// hold exactly what its peers read from the wire or their buckets' digests would never agree.
    /// </summary>
    public DateTimeOffset ExpiresAt => DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAtUnixMilliseconds);

    /// <summary>When the session expires, in Unix ms.</summary>
    public long ExpiresAtUnixMilliseconds => _packed & ExpiryMask;

    /// <summary>The session came back for a second request.</summary>
    public bool Established => (_packed & EstablishedBit) != 0;

    /// <summary>Pinned by a node that could not act as a member of its cluster (see the type's summary).</summary>
    public bool Provisional => (_packed & ProvisionalBit) != 0;

    /// <summary>The latest expiry a <see cref="DateTimeOffset"/> holds, in Unix ms: a later one read from the wire is malformed.</summary>
    internal static readonly long MaxExpiryUnixMilliseconds = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    /// <summary>The marker of a session cleared by an operator (established, so that it outranks the pins it clears).</summary>
    public static AffinityEntry Cleared(DateTimeOffset expiresAt) => new(string.Empty, expiresAt, Established: true);

    /// <summary>True for the marker of a cleared session.</summary>
    public bool IsCleared => Backend.Length == 0;

    /// <summary>True when the session has expired at <paramref name="unixMilliseconds"/>.</summary>
    internal bool ExpiredAt(long unixMilliseconds) => ExpiresAtUnixMilliseconds <= unixMilliseconds;

    /// <summary>
    /// True when this entry replaces <paramref name="held"/> for the same session on every node:
    /// pinned by a member before provisional, then established before not, then the later expiry,
    /// then (a tie) the ordinally greater backend.
    /// </summary>
    public bool Wins(AffinityEntry held) =>
        Provisional != held.Provisional ? !Provisional
        : Established != held.Established ? Established
        : ExpiresAtUnixMilliseconds != held.ExpiresAtUnixMilliseconds ? ExpiresAtUnixMilliseconds > held.ExpiresAtUnixMilliseconds
        : string.CompareOrdinal(Backend, held.Backend) > 0;

    /// <inheritdoc />
    public bool Equals(AffinityEntry other) => _packed == other._packed && string.Equals(Backend, other.Backend, StringComparison.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is AffinityEntry other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_packed, Backend);

    /// <summary>Equal backend, expiry and flags.</summary>
    public static bool operator ==(AffinityEntry left, AffinityEntry right) => left.Equals(right);

    /// <summary>A different backend, expiry or flag.</summary>
    public static bool operator !=(AffinityEntry left, AffinityEntry right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() =>
        $"AffinityEntry {{ Backend = {Backend}, ExpiresAt = {ExpiresAt:O}, Established = {Established}, Provisional = {Provisional} }}";
}
