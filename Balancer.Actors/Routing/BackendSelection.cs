using Balancer.Affinity;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing;

/// <summary>
/// How one request, connection or client call of a pool gets its backend, attempt after attempt:
/// the session's backend first (moved by rendezvous hashing when that backend is gone, so that
/// every node moves a session to the same backend), then the pool's algorithm, never a backend
/// already tried, at most <c>1 + retries</c> attempts. Each attempt is a <see cref="BackendLease"/>
/// that says whether the session is to be pinned to its backend once the backend answers. The HTTP
/// and TCP frontends and the client all select through this type; they differ only in how they move bytes.
/// </summary>
/// <remarks>A mutable struct: keep it in one local and call <see cref="Next"/> on that local.</remarks>
public struct BackendSelection
{
    private readonly PoolHandle _pool;
    private readonly RoutingRequest _request;
    private readonly Session _session;
    private AttemptedBackends _attempted;
    private bool? _newSessionAdmitted;

    private BackendSelection(PoolHandle pool, PoolSnapshot snapshot, in RoutingRequest request, Session session)
    {
        _pool = pool;
        Snapshot = snapshot;
        _request = request;
        _session = session;
    }

    /// <summary>The pool's snapshot, read once for every attempt of this selection.</summary>
    public PoolSnapshot Snapshot { get; }

    /// <summary>Attempts handed out so far (leases with a backend).</summary>
    public int Attempts { get; private set; }

    /// <summary>
    /// How the request's session was found, for traces: <c>hit</c> (its backend was known),
    /// <c>miss</c> (new, or moved from a backend that is gone), <c>none</c> (no affinity, or no key).
    /// </summary>
    public readonly string AffinityOutcome =>
        _session.Table is null || (_session.Key is null && _session.Backend is null) ? "none"
        : _session.Backend is not null && !_session.Moved ? "hit"
        : "miss";

    /// <summary>True while another attempt is allowed by the pool's <c>retries</c>.</summary>
    public readonly bool CanRetry => Attempts < 1 + Snapshot.Settings.Retries;

    /// <summary>True when another attempt is allowed and a routable backend is left that no attempt has tried.</summary>
    public readonly bool HasAnotherBackend => CanRetry && Attempts < Snapshot.Routable.Length;

    /// <summary>
    /// A selection for a request or connection of a frontend: its session is read from the request
    /// as the pool's affinity mode says (cookie, header, learned cookie or source address); under
    /// <c>write = majority</c> a session this node has not seen is first read from a majority.
    /// A new session is balanced by the pool's algorithm.
    /// </summary>
    public static ValueTask<BackendSelection> StartAsync(PoolHandle pool, RoutingRequest request)
    {
        var snapshot = pool.Snapshot;
        if (pool.Affinity is not { } table)
        {
            return ValueTask.FromResult(new BackendSelection(pool, snapshot, request, default));
        }
        if (table.Cookie is { } cookie)
        {
            // A missing or tampered cookie is simply no session: the request is balanced as usual.
            var named = request.Cookie(table.Settings.CookieName) is { } value ? cookie.Verify(value) : null;
            return ValueTask.FromResult(new BackendSelection(pool, snapshot, request, new Session(table, null, snapshot.FindForSession(named), false)));
        }
        var key = AffinityTable.KeyFor(table.Settings, request);
        if (key is null)
        {
            // No session yet; in learn-cookie mode the backend's answer may start one.
            return ValueTask.FromResult(new BackendSelection(pool, snapshot, request,
                table.Settings.Mode == AffinityMode.LearnCookie ? new Session(table, null, null, false) : default));
        }
        var lookup = table.FindAsync(key);
        return lookup.IsCompletedSuccessfully
            ? ValueTask.FromResult(new BackendSelection(pool, snapshot, request, Resolve(snapshot, table, key, lookup.Result, newByRendezvous: false)))
            : ResolveAsync(pool, snapshot, request, table, key, lookup);

        static async ValueTask<BackendSelection> ResolveAsync(PoolHandle pool, PoolSnapshot snapshot, RoutingRequest request, AffinityTable table, string key, ValueTask<SessionLookup> lookup) =>
            new(pool, snapshot, request, Resolve(snapshot, table, key, await lookup.ConfigureAwait(false), newByRendezvous: false));
    }

    /// <summary>
    /// A selection for a client call with an optional session key. The session is read from this
    /// node's copy of the table (no wait for other nodes), so a key it does not hold goes to the
    /// backend that rendezvous hashing gives it, which every node agrees on before replication
    /// does; a pool without affinity places a key by rendezvous hashing alone, and pins nothing.
    /// </summary>
    public static BackendSelection Start(PoolHandle pool, string? sessionKey)
    {
        var snapshot = pool.Snapshot;
        var request = new RoutingRequest(null);
        if (sessionKey is null)
        {
            return new BackendSelection(pool, snapshot, request, default);
        }
        if (pool.Affinity is not { } table)
        {
            return new BackendSelection(pool, snapshot, request, new Session(null, null, snapshot.RendezvousFor(sessionKey), false));
        }
        return new BackendSelection(pool, snapshot, request, Resolve(snapshot, table, sessionKey, SessionLookup.PinnedTo(table.Find(sessionKey)), newByRendezvous: true));
    }

    /// <summary>
    /// The next attempt: the session's backend first, then the algorithm's choice among the
    /// backends not tried yet. The lease has no backend when none is left or the pool's
    /// <c>retries</c> are spent. An attempt after the first counts as a retry of the pool.
    /// </summary>
    public BackendLease Next()
    {
        if (!CanRetry)
        {
            return default;
        }
        var backend = Snapshot.Select(in _request, ref _attempted, _session.Backend);
        if (backend is null)
        {
            return default;
        }
        if (++Attempts > 1)
        {
            _pool.CountRetry();
        }
        backend.Counters.Start();
        var pins = _session.Table is not null && (backend != _session.Backend || _session.Moved);
        // A new session (not one moved or re-pinned) counts against its client's budget, once
        // whatever the attempts.
        if (pins && (_session.Backend is null || _session.Provisional) && _session.Key is not null && _request.ClientAddress is { } client)
        {
            _newSessionAdmitted ??= _session.Table!.AdmitNewSession(client);
            pins = _newSessionAdmitted.Value;
        }
        return new BackendLease(backend, pins ? new SessionPin(_session.Table!, _session.Key, _session.Provisional) : null);
    }

    /// <summary>
    /// Where a looked-up session goes: its backend while that backend may serve it; by rendezvous
    /// hashing when that backend is gone (so that nodes moving it at the same moment agree); nowhere
    /// in particular when the table could not be read (and then it is not pinned either, so the
    /// entry other nodes hold survives).
    /// </summary>
    private static Session Resolve(PoolSnapshot snapshot, AffinityTable table, string key, SessionLookup found, bool newByRendezvous)
    {
        switch (found.Outcome)
        {
            case SessionLookupOutcome.Unavailable:
                return table.Settings.Mode == AffinityMode.LearnCookie ? new Session(table, null, null, false) : default;
            // The cluster's copy could not be read (a majority out of sight or too slow): the
            // session is pinned here as provisional, where rendezvous hashing puts it (so that
            // nodes in the same plight agree), and stays there meanwhile; any pin of the
            // cluster's wins over it when it arrives.
            case SessionLookupOutcome.Unconfirmed:
                return table.Settings.Mode == AffinityMode.LearnCookie
                    ? new Session(table, null, null, false)
                    : new Session(table, key, snapshot.RendezvousFor(key), true, Provisional: true);
            case SessionLookupOutcome.Pinned when snapshot.FindForSession(found.Backend) is { } pinned:
                return new Session(table, key, pinned, false);
            case SessionLookupOutcome.Pinned:
                return new Session(table, key, snapshot.RendezvousFor(key), true);
            // A learn-cookie key the table does not hold was made up by the client, not set by a
            // backend: it is never pinned (the table learns sessions from backends' Set-Cookie
            // only), so a client cannot fill the table with keys of its own.
            case SessionLookupOutcome.NotPinned when table.Settings.Mode == AffinityMode.LearnCookie:
                return new Session(table, null, null, false);
            default:
                return newByRendezvous
                    ? new Session(table, key, snapshot.RendezvousFor(key), true)
                    : new Session(table, key, null, false);
        }
    }

    /// <summary>
    /// The request's session: the table to pin it in (null: nothing to pin), its key (null for
    /// cookie mode, or a learned cookie still to come), the backend its first attempt goes to,
    /// whether that backend is a new place for it (then it is pinned there even though it was
    /// chosen for it), and whether its pin is provisional (the cluster's copy could not be read).
    /// </summary>
    private readonly record struct Session(AffinityTable? Table, string? Key, Backend? Backend, bool Moved, bool Provisional = false);
}
