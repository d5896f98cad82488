using Akka.Actor;
using Akka.DistributedData;

namespace Balancer.Affinity;

/// <summary>
/// One lookup of a session this node's cache does not hold (<c>write = majority</c>), in the way of
/// Akka.DistributedData's ReadAggregator: asks this node's replica and every reachable peer's store
/// for the one entry, and once a majority of the members running Balancer have answered, caches the
/// winning entry in the pool's table, answers the lookup and stops. Reading the whole bucket from a majority instead (a
/// replicator ReadMajority) would ship thousands of sessions per new session.
/// </summary>
internal sealed class SessionLookupAggregator : ReceiveActor, IWithTimers
{
    private readonly AffinityStore.Lookup _lookup;
    private readonly AffinityTable _table;
    private readonly Func<DateTimeOffset> _now;
    private readonly long _id;
    private readonly AffinityBucketKey _bucket;
    private readonly IReadOnlyList<Address> _peers;
    private readonly IEnumerable<string> _storePath;
    private readonly IActorRef _replicator;
    private readonly TimeSpan _timeout;
    private readonly int _needed;
    private int _answers;
    private AffinityEntry? _best;

    public SessionLookupAggregator(AffinityStore.Lookup lookup, AffinityTable table, Func<DateTimeOffset> now, long id, AffinityBucketKey bucket,
        IReadOnlyList<Address> peers, int needed, IEnumerable<string> storePath, IActorRef replicator, TimeSpan timeout)
    {
        _lookup = lookup;
        _table = table;
        _now = now;
        _id = id;
        _bucket = bucket;
        _peers = peers;
        _storePath = storePath;
        _replicator = replicator;
        _timeout = timeout;
        _needed = needed;
        Receive<GetSuccess>(success => Answer(success.Get(bucket).TryGetValue(lookup.Hash, out var mine) ? mine : null));
        Receive<NotFound>(_ => Answer(null));
        Receive<AffinityStore.PeerLookupAnswer>(answer => Answer(
            answer.Backend is null || answer.ExpiresAt <= 0 || answer.ExpiresAt > AffinityEntry.MaxExpiryUnixMilliseconds
                ? null
                : new AffinityEntry(answer.Backend, DateTimeOffset.FromUnixTimeMilliseconds(answer.ExpiresAt), answer.Established, answer.Provisional)));
        Receive<TimedOut>(_ =>
        {
            // A majority did not answer in time: the session is pinned here as provisional, so
            // that an entry the slow nodes may hold still wins over it.
            lookup.Found.TrySetResult(SessionLookup.Unconfirmed);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(AffinityStore.Lookup lookup, AffinityTable table, Func<DateTimeOffset> now, long id, AffinityBucketKey bucket,
        IReadOnlyList<Address> peers, int needed, IEnumerable<string> storePath, IActorRef replicator, TimeSpan timeout) =>
        Akka.Actor.Props.Create(() => new SessionLookupAggregator(lookup, table, now, id, bucket, peers, needed, storePath, replicator, timeout));

    protected override void PreStart()
    {
        _replicator.Tell(Dsl.Get(_bucket, ReadLocal.Instance));
        var asked = new AffinityStore.PeerLookup(_id, _lookup.Hash);
        foreach (var address in _peers)
        {
            // The same store on the peer: same pool, same place in its tree.
            Context.ActorSelection(new RootActorPath(address) / _storePath).Tell(asked);
        }
        Timers.StartSingleTimer(TimedOut.Instance, TimedOut.Instance, _timeout);
    }

    /// <summary>No request waits for a lookup that is gone before it was answered (its store stopping stops it too).</summary>
    protected override void PostStop() => _lookup.Found.TrySetResult(SessionLookup.Unavailable);

    private void Answer(AffinityEntry? entry)
    {
        if (entry is { } answered && (_best is not { } sofar || answered.Wins(sofar)))
        {
            _best = entry;
        }
        if (++_answers < _needed)
        {
            return;
        }
        if (_best is { IsCleared: false } best && best.ExpiresAt > _now())
        {
            _table.Merge(_lookup.Hash, best);
            _lookup.Found.TrySetResult(SessionLookup.PinnedTo(best.Backend));
        }
        else
        {
            _lookup.Found.TrySetResult(SessionLookup.NotPinned);
        }
        Context.Stop(Self);
    }

    private sealed class TimedOut
    {
        public static readonly TimedOut Instance = new();
        private TimedOut() { }
    }
}
