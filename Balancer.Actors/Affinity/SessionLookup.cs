namespace Balancer.Affinity;

/// <summary>What a session lookup found.</summary>
public enum SessionLookupOutcome
{
    /// <summary>No live entry: the session is new (or expired, or cleared).</summary>
    NotPinned,
    /// <summary>The session is pinned to <see cref="SessionLookup.Backend"/>.</summary>
    Pinned,
    /// <summary>
    /// A majority could not be read in time: the session may be pinned elsewhere, so the caller
    /// balances the request without pinning it, and the entry other nodes may hold survives.
    /// </summary>
    Unavailable,
}

/// <summary>The answer to a session lookup: the outcome and, when pinned, the backend's name.</summary>
public readonly record struct SessionLookup(SessionLookupOutcome Outcome, string? Backend)
{
    /// <summary>No live entry.</summary>
    public static SessionLookup NotPinned => default;

    /// <summary>A majority could not be read in time.</summary>
    public static SessionLookup Unavailable => new(SessionLookupOutcome.Unavailable, null);

    /// <summary>Pinned to <paramref name="backend"/>, or not pinned when it is null.</summary>
    public static SessionLookup PinnedTo(string? backend) => backend is null ? default : new(SessionLookupOutcome.Pinned, backend);
}
