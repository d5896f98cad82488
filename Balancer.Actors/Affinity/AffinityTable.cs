using Akka.Actor;
using Balancer.Configuration;
using Balancer.Routing;

namespace Balancer.Affinity;

/// <summary>
/// The data plane's view of one pool's replicated affinity table: a local cache read without a lock
/// or a message, keyed by each session key's <see cref="SessionHash"/> (no key is stored). A new
/// session, a session back for its second request (then it is established), or a session whose
/// entry is older than ttl/4, is handed to the pool's <see cref="AffinityStore"/> with a Tell; with
/// <c>write = majority</c> the caller awaits the store's acknowledgement before the first response
/// (once per session, never per request). Until the cluster's affinity key is known (the first
/// second of a new cluster), sessions are balanced without being pinned.
/// </summary>
public sealed class AffinityTable
{
    private readonly SessionTable _entries = new();
    private readonly AffinityKey _key;
    // The pool's affinity store; null between two incarnations of the node (see Attach).
    private ICanTell? _store;
    private readonly Func<DateTimeOffset> _now;
    private readonly TimeSpan _readTimeout;
    private long _unconfirmedPins;
    private long _sessionsOverBudget;
    private long _sessionsMovedByMerge;
    private readonly NewSessionBudget _newSessions;

    internal AffinityTable(PoolSettings pool, ICanTell store, Func<DateTimeOffset> now, AffinityKey affinityKey, TimeSpan writeTimeout, TimeSpan readTimeout)
    {
        WriteTimeout = writeTimeout;
        _readTimeout = readTimeout;
        Settings = pool.Affinity;
        _store = store;
        _now = now;
        _key = affinityKey;
        _newSessions = new NewSessionBudget(pool.Affinity.NewSessionsPerClient);
        Cookie = pool.Affinity.Mode == AffinityMode.Cookie ? new AffinityCookie(affinityKey, pool.Name, pool.Affinity.Ttl, now) : null;
    }

    /// <summary>How long a new session waits for a majority before it is served anyway (pinned locally).</summary>
    public TimeSpan WriteTimeout { get; }

    /// <summary>The pool's affinity settings.</summary>
    public AffinitySettings Settings { get; }

    /// <summary>The cookie codec of <c>mode = cookie</c>, else null.</summary>
    public AffinityCookie? Cookie { get; }

    /// <summary>Longer session keys are never pinned (a header or cookie value is not even read as one).</summary>
    public const int MaxKeyLength = 512;

    /// <summary>Entries cached on this node.</summary>
    public int Count => _entries.Count;

    /// <summary>The hash <paramref name="key"/> is stored under, or null while the cluster's affinity key is not known yet.</summary>
    public ulong? HashOf(string key) => _key.SessionHash?.Of(key);

    /// <summary>The backend <paramref name="key"/> is pinned to, when the entry has not expired.</summary>
    public string? Find(string key)
    {
        if (HashOf(key) is not { } hash || !_entries.TryGetValue(hash, out var entry))
        {
            return null;
        }
        var now = _now();
        if (entry.ExpiresAt <= now || entry.IsCleared)
        {
            return null;
        }
        // Established on its second request; then refreshed at most every ttl/4, so a busy session
        // costs one replicated write per quarter-TTL. A provisional one is confirmed by its first
        // request once the cluster's replicas have been read here since it was pinned (they
        // replaced it where the cluster had pinned the session elsewhere).
        if (!entry.Established || entry.ExpiresAt - now < Settings.Ttl - Settings.Ttl / 4 || Confirmable(entry))
        {
            Pin(hash, entry.Backend, established: true);
        }
        return entry.Backend;
    }

    /// <summary>
    /// Like <see cref="Find"/>, but with <c>write = majority</c> a key this node has not seen is read
    /// from a majority of nodes first (once per new session), so a session acknowledged elsewhere is
    /// found here even before gossip brings it.
    /// </summary>
    public ValueTask<SessionLookup> FindAsync(string key)
    {
        var found = Find(key);
        if (found is not null || Settings.Write != AffinityWriteConsistency.Majority)
        {
            return ValueTask.FromResult(SessionLookup.PinnedTo(found));
        }
        if (HashOf(key) is not { } hash)
        {
            return ValueTask.FromResult(SessionLookup.Unavailable);
        }
        if (!MajorityInSight)
        {
            return ValueTask.FromResult(SessionLookup.Unconfirmed);
        }
        var loaded = new TaskCompletionSource<SessionLookup>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Store is not { } store)
        {
            // No store (the node is rejoining its cluster): this node's table is all there is to read.
            return ValueTask.FromResult(SessionLookup.PinnedTo(null));
        }
        store.Tell(new AffinityStore.Lookup(hash, loaded), ActorRefs.NoSender);
        return new ValueTask<SessionLookup>(UnavailableAfter(loaded.Task, _readTimeout + TimeSpan.FromSeconds(1)));
    }

    // The store answers within the read timeout; this bounds the wait even if it never does (a
    // store that restarted, a message lost on the way to it).
    private static async Task<SessionLookup> UnavailableAfter(Task<SessionLookup> found, TimeSpan limit)
    {
        try
        {
            return await found.WaitAsync(limit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return SessionLookup.Unavailable;
        }
    }

    /// <summary>
    /// True when <paramref name="client"/> may start one more session (<c>new-sessions-per-client</c>);
    /// otherwise its request is served without being pinned, and counted.
    /// </summary>
    internal bool AdmitNewSession(System.Net.IPAddress client)
    {
        if (_newSessions.TryTake(client))
        {
            return true;
        }
        // The store logs it, at most once a minute: told on the first refusal and every 1,000th after.
        if (Interlocked.Increment(ref _sessionsOverBudget) % 1000 == 1)
        {
            Store?.Tell(AffinityStore.OverBudget.Instance, ActorRefs.NoSender);
        }
        return false;
    }

    /// <summary>New sessions served without being pinned because their client was over <c>new-sessions-per-client</c>.</summary>
    public long SessionsOverBudget => Interlocked.Read(ref _sessionsOverBudget);

    /// <summary>Pins that were served but not confirmed by the write consistency in time (they spread by gossip).</summary>
    public long UnconfirmedPins => Volatile.Read(ref _unconfirmedPins);

    internal void CountUnconfirmedPin() => Interlocked.Increment(ref _unconfirmedPins);

    /// <summary>
    /// Live sessions this node pinned while it served outside its cluster (rejoining) that merging
    /// with the cluster's replicas moved to another backend: both sides had pinned the session
    /// differently, and the replicas' rule chose one backend on every node.
    /// </summary>
    public long SessionsMovedByMerge => Interlocked.Read(ref _sessionsMovedByMerge);

    /// <summary>
    /// Pins <paramref name="key"/> to <paramref name="backend"/> here at once and replicates it; the
    /// task completes when the pool's write consistency is satisfied (at once for <c>local</c>).
    /// </summary>
    public Task Pin(string key, string backend, bool provisional = false) =>
        key.Length > MaxKeyLength || HashOf(key) is not { } hash
            ? Task.CompletedTask
            : Pin(hash, backend, established: false, provisional);

    private Task Pin(ulong hash, string backend, bool established, bool provisional = false)
    {
        AffinityEntry? held = _entries.TryGetValue(hash, out var entry) ? entry : null;
        // The table sheds what its buckets evict within a flush; this bounds it meanwhile.
        if (held is null && _entries.Count >= 2 * Settings.MaxEntries)
        {
            Store?.Tell(AffinityStore.TableFull.Instance, ActorRefs.NoSender);
            return Task.CompletedTask;
        }
        // A session moved to another backend stays established; a pin after an operator's clear
        // is established too, or the clear marker (which is) would win over it on every node.
        var store = Store;
        // A provisional pin stays provisional when refreshed until the cluster's replicas have been
        // read since it was made: a pin of the cluster's for the session may still be on its way.
        var unconfirmed = held is { Provisional: true } heldEntry && heldEntry.Backend == backend && !Confirmable(heldEntry);
        var pinned = new AffinityEntry(backend, _now() + Settings.Ttl, established || held is { Established: true }, Provisional: provisional || unconfirmed || !PinsAsMember);
        if (!_entries.Set(hash, pinned))
        {
            Store?.Tell(AffinityStore.TableFull.Instance, ActorRefs.NoSender);
            return Task.CompletedTask;
        }
        if (store is null)
        {
            // Pinned here only; the next incarnation's store replicates every entry it finds. (A
            // provisional pin asked for as such was counted by its caller.)
            if (Settings.Write == AffinityWriteConsistency.Majority && !provisional)
            {
                CountUnconfirmedPin();
            }
            return Task.CompletedTask;
        }
        if (Settings.Write == AffinityWriteConsistency.Local)
        {
            store.Tell(new AffinityStore.Write(hash, pinned, null), ActorRefs.NoSender);
            return Task.CompletedTask;
        }
        var acknowledged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        store.Tell(new AffinityStore.Write(hash, pinned, acknowledged), ActorRefs.NoSender);
        return acknowledged.Task;
    }

    /// <summary>Every live entry known here (for the management API).</summary>
    public IReadOnlyDictionary<ulong, AffinityEntry> Snapshot()
    {
        var now = _now();
        return _entries.ToList(e => e.ExpiresAt > now && !e.IsCleared).ToDictionary(e => e.Key, e => e.Value);
    }

    /// <summary>The live entry stored under <paramref name="hash"/> here, without refreshing it (for the management API).</summary>
    public AffinityEntry? Lookup(ulong hash) =>
        _entries.TryGetValue(hash, out var entry) && entry.ExpiresAt > _now() && !entry.IsCleared ? (AffinityEntry?)entry : null;

    /// <summary>
    /// Forgets one session (stored under <paramref name="hash"/>) or every session of the pool on every
    /// node; the task gives how many live entries were cleared once the pool's write consistency is met.
    /// </summary>
    public Task<int> Clear(ulong? hash)
    {
        if (Store is not { } store)
        {
            return Task.FromException<int>(new InvalidOperationException("this node is rejoining its cluster; clear sessions on a node that is a member"));
        }
        var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        store.Tell(new AffinityStore.Clear(hash, done), ActorRefs.NoSender);
        return done.Task;
    }

    private ICanTell? Store => Volatile.Read(ref _store);

    // True once this node is a member whose replicas were read from the cluster (its duty began);
    // until then, and between incarnations, what it pins is provisional.
    private volatile bool _member;

    /// <summary>
    /// False while this node cannot reach a majority of its cluster's members (the minority side of
    /// a partition, before the resolver has downed anyone), and until it has read the majority's
    /// sessions again after: its pins are provisional meanwhile, and none is confirmed as a
    /// member's before the majority's pins of the same sessions have been merged here.
    /// </summary>
    internal bool MajorityInSight
    {
        get => _majorityInSight;
        set
        {
            if (value && !_majorityInSight)
            {
                Confirmed();
            }
            _majorityInSight = value;
        }
    }

    private volatile bool _majorityInSight = true;

    /// <summary>A pin made now is the cluster's (not provisional): this node is a member, has read the replicas, and sees a majority.</summary>
    private bool PinsAsMember => _member && _majorityInSight;

    /// <summary>This node is a member and has read the cluster's replicas: its pins are a member's from now on.</summary>
    internal void JoinedCluster()
    {
        if (!_member)
        {
            Confirmed();
        }
        _member = true;
    }

    // When the cluster's replicas were last read here (joined, or a majority back in sight and
    // re-read), in Unix ms: a provisional pin made before then has met every pin of the cluster's
    // for its session (which won over it where they differed), so it may become a member's.
    private long _confirmedAt = long.MinValue;

    private void Confirmed() => Interlocked.Exchange(ref _confirmedAt, _now().ToUnixTimeMilliseconds());

    /// <summary>True for a provisional entry pinned before the replicas were last read here: it can be confirmed as a member's.</summary>
    private bool Confirmable(AffinityEntry entry) =>
        entry.Provisional && PinsAsMember && (entry.ExpiresAt - Settings.Ttl).ToUnixTimeMilliseconds() < Interlocked.Read(ref _confirmedAt);

    /// <summary>The pool's affinity store (of this incarnation of the node) takes the table's writes from now on.</summary>
    internal void Attach(ICanTell store) => Volatile.Write(ref _store, store);

    /// <summary><paramref name="store"/> stopped: until the next one attaches, sessions are pinned here only.</summary>
    internal void Detach(ICanTell store)
    {
        if (ReferenceEquals(Interlocked.CompareExchange(ref _store, null, store), store))
        {
            // Until the next store has joined (its handle says so when it publishes the table).
            _member = false;
        }
    }

    /// <summary>Takes a replicated entry when it wins over the cached one; true when that moved a live session to another backend.</summary>
    internal bool Merge(ulong hash, AffinityEntry entry)
    {
        if (_entries.TryGetValue(hash, out var cached) && (cached == entry || !entry.Wins(cached)))
        {
            return false;
        }
        var moved = false;
        _entries.Update(hash, held =>
        {
            if (held is not { } existing)
            {
                return entry;
            }
            if (!entry.Wins(existing))
            {
                return existing;
            }
            // Only a session pinned here while outside the cluster can have been pinned elsewhere
            // too; one another node moved off a backend that failed is no conflict.
            moved = existing.Provisional && !entry.Provisional && !entry.IsCleared && existing.Backend != entry.Backend && existing.ExpiresAt > _now();
            return entry;
        });
        if (moved)
        {
            Interlocked.Increment(ref _sessionsMovedByMerge);
        }
        return moved;
    }

    /// <summary>Every entry held here, live or not (what a new incarnation's store replicates).</summary>
    internal IEnumerable<KeyValuePair<ulong, AffinityEntry>> Entries => _entries.ToList();

    /// <summary>The entry cached under <paramref name="hash"/>, expired or not.</summary>
    internal AffinityEntry? Cached(ulong hash) => _entries.TryGetValue(hash, out var entry) ? (AffinityEntry?)entry : null;

    /// <summary>Forgets a session evicted or swept from its bucket, unless it was pinned again here since.</summary>
    internal void Forget(ulong hash, AffinityEntry? asHeld = null)
    {
        _entries.Remove(hash, asHeld);
    }

    internal IEnumerable<ulong> Expired(DateTimeOffset now) => _entries.ToList(e => e.ExpiresAt <= now).Select(e => e.Key).ToList();

    /// <summary>The key of a session for the pool's mode, read from the request (null when it has none).</summary>
    public static string? KeyFor(AffinitySettings settings, RoutingRequest request)
    {
        switch (settings.Mode)
        {
            case AffinityMode.SourceIp:
                return request.ClientAddress?.ToString();
            case AffinityMode.Header:
                return request.Header(settings.KeyName) is { Length: > 0 and <= MaxKeyLength } header ? header : null;
            case AffinityMode.LearnCookie:
                return request.Cookie(settings.KeyName) is { Length: > 0 and <= MaxKeyLength } cookie ? cookie : null;
            default:
                return null;
        }
    }
}
