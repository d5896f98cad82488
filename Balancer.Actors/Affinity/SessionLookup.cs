namespace Balancer.Affinity;

/// <summary>What a session lookup found.</summary>
public enum SessionLookupOutcome
{
    /// <summary>No live entry: the session is new (or expired, or cleared).</summary>
    NotPinned,
    /// <summary>The session is pinned to <see cref="SessionLookup.Backend"/>.</summary>
    Pinned,
    /// <summary>
    /// The table cannot be read at all (no affinity key yet, a store that does not answer): the
    /// caller balances the request without pinning it.
    /// </summary>
    Unavailable,
    /// <summary>
    /// The cluster's copy of the session could not be read: a majority is out of sight (the
    /// minority side of a partition) or did not answer in time. The session may be pinned
    /// elsewhere, so the caller pins it here as provisional: it keeps its backend here meanwhile,
    /// and any pin of the cluster's wins over it when that arrives.
    /// </summary>
    Unconfirmed,
}

/// <summary>The answer to a session lookup: the outcome and, when pinned, the backend's name.</summary>
public readonly record struct SessionLookup(SessionLookupOutcome Outcome, string? Backend)
{
    /// <summary>No live entry.</summary>
    public static SessionLookup NotPinned => default;

    /// <summary>The table cannot be read.</summary>
    public static SessionLookup Unavailable => new(SessionLookupOutcome.Unavailable, null);

    /// <summary>The cluster's copy could not be read.</summary>
    public static SessionLookup Unconfirmed => new(SessionLookupOutcome.Unconfirmed, null);

    /// <summary>Pinned to <paramref name="backend"/>, or not pinned when it is null.</summary>
    public static SessionLookup PinnedTo(string? backend) => backend is null ? default : new(SessionLookupOutcome.Pinned, backend);
}
