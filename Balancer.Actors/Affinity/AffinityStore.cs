using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Balancer.Configuration;

namespace Balancer.Affinity;

/// <summary>
/// One pool's replicated affinity table: session hash → backend with an expiry, in
/// <c>buckets</c> <see cref="AffinityBucket"/> keys (<c>balancer-sessions-POOL-N</c>) of at most
/// max-entries/buckets sessions each, so that no replicated value outgrows a remoting frame. It
/// writes what the data plane pins (local or majority), paced so that the deltas gossiped in one
/// round fit the frame too, merges what other nodes write into the data plane's cache (and drops
/// what their buckets evicted), and sweeps expired entries.
/// </summary>
internal sealed class AffinityStore : ReceiveActor, IWithTimers
{
    private readonly PoolSettings _pool;
    private readonly IWriteConsistency _write;
    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly AffinityBucketKey[] _buckets;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AffinityTable _table;
    private readonly bool _adopted;
    private readonly Routing.PoolHandle _handle;
    private DateTimeOffset _lastFullWarning = DateTimeOffset.MinValue;
    private DateTimeOffset _lastOverBudgetWarning = DateTimeOffset.MinValue;

    private readonly TimeSpan _readTimeout;
    private readonly Dictionary<AffinityBucketKey, List<Write>> _pending = new();

    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly string _role;
    // Starts anywhere: a late answer to a lookup of this store's previous incarnation (a restart
    // keeps the same actor path) must not be taken for one of this incarnation's.
    private long _lastLookupId = Random.Shared.NextInt64();

    // Each bucket as last replicated to this node, to find the expired entries it still holds.
    private readonly Dictionary<AffinityBucketKey, AffinityBucket> _latest = new();

    // The sessions of each bucket that the data plane's cache holds (pinned here, or found by a
    // lookup) but that the bucket has not shown yet: what Reconcile checks against the bucket, so
    // that the cache never keeps a pin every replica evicted at once. What a bucket has shown, the
    // next version of it drops or keeps, so only these few need a set of their own.
    private readonly Dictionary<AffinityBucketKey, HashSet<ulong>> _unseen = new();

    // A majority write is already on its way: the pins that arrive meanwhile wait for the next one.
    private bool _flushQueued;

    private readonly int _capacity;
    private ulong _flushes;
    private readonly long _frameBytes;
    private readonly TimeSpan _deltaRound;
    // Sessions this store may still hand to the replicator before the next delta round (see OnFlush).
    private double _writeAllowance;
    private DateTimeOffset _allowanceAt = DateTimeOffset.MinValue;

    /// <summary>How long pins gather with <c>write = local</c>, where nobody waits for them.</summary>
    internal static readonly TimeSpan LocalFlushDelay = TimeSpan.FromMilliseconds(100);

    public AffinityStore(PoolSettings pool, Routing.PoolHandle handle, AffinityKey affinityKey, NodeSettings node, bool newTable = false)
    {
        // Majorities count the members with Balancer's role, as its replicator's majority writes do.
        _role = node.Role;
        _readTimeout = node.ReadTimeout;
        var writeTimeout = node.WriteTimeout;
        _pool = pool;
        // The data plane's side of this store: created by its first incarnation and published on the
        // pool's handle; a restarted store keeps it (its reference stays the same), so no live
        // session looks new meanwhile.
        var scheduler = Context.System.Scheduler;
        _handle = handle;
        _adopted = handle.Affinity is not null && !newTable;
        _table = (newTable ? null : handle.Affinity) ?? new AffinityTable(pool, Self, () => scheduler.Now, affinityKey, writeTimeout, node.ReadTimeout);
        _table.Attach(Self);
        handle.PublishAffinity(_table);
        _write = pool.Affinity.Write == AffinityWriteConsistency.Majority ? new WriteMajority(writeTimeout) : WriteLocal.Instance;
        _buckets = Replication.ReplicatedKeys.AffinityBuckets(pool);
        _capacity = pool.Affinity.BucketCapacity;
        var config = Context.System.Settings.Config;
        _frameBytes = Replication.BalancerReplicator.FrameBytes(config);
        // The replicator gossips deltas every fifth of its gossip interval, 200 ms at least.
        _deltaRound = TimeSpan.FromTicks(Math.Max(config.GetTimeSpan("balancer.replication.gossip-interval", TimeSpan.FromSeconds(1)).Ticks / 5, TimeSpan.FromMilliseconds(200).Ticks));

        Receive<Write>(Enqueue);
        Receive<Flush>(_ =>
        {
            _flushQueued = false;
            OnFlush();
        });
        Receive<Lookup>(OnLookup);
        Receive<PeerLookup>(asked =>
        {
            _replicator.Tell(Dsl.Get(BucketOf(asked.Hash), ReadLocal.Instance, new PeerAsked(asked.Id, asked.Hash, Sender)));
        });
        Receive<GetSuccess>(success => AnswerRead(success.Request, success.Data as AffinityBucket));
        Receive<NotFound>(notFound => AnswerRead(notFound.Request, null));
        Receive<GetFailure>(failure =>
        {
            // A re-read that a majority did not answer in time: tried again on the next check.
            if (failure.Request is Reread reread && ReferenceEquals(reread, _rereading))
            {
                _rereading = null;
            }
        });
        Receive<Clear>(OnClear);
        Receive<UpdateSuccess>(success =>
        {
            switch (success.Request)
            {
                case WriteBatch batch:
                    batch.Acknowledge(null);
                    break;
            }
        });
        Receive<UpdateTimeout>(timeout => Failed(timeout.Request,
            new TimeoutException("affinity change applied on this node but not confirmed by a majority of nodes in time; it spreads by gossip")));
        Receive<ModifyFailure>(failure => Failed(failure.Request, failure.Cause));
        Receive<Changed>(changed =>
        {
            if (changed.Data is not AffinityBucket bucket || changed.Key is not AffinityBucketKey key)
            {
                return;
            }
            var moved = Fold(_latest.TryGetValue(key, out var previous) ? previous : null, bucket);
            _latest[key] = bucket;
            if (moved > 0)
            {
                _log.Warning("pool {0}: {1} session(s) this node pinned provisionally (outside its cluster, or out of sight of a majority) had been pinned to another backend by the cluster; the cluster's choice now holds on every node ({2} so far)",
                    _pool.Name, moved, _table.SessionsMovedByMerge);
            }
            Reconcile(key, bucket);
        });
        Receive<Sweep>(_ => OnSweep());
        Receive<ClusterEvent.CurrentClusterState>(_ => OnReachabilityChanged());
        // Cluster.State is kept by another actor and may trail the event that woke this one: look again every second.
        Receive<CheckReachability>(_ => OnReachabilityChanged());
        Receive<ClusterEvent.IReachabilityEvent>(_ => OnReachabilityChanged());
        Receive<ClusterEvent.IMemberEvent>(_ => OnReachabilityChanged());
        Receive<OverBudget>(_ =>
        {
            var now = Context.System.Scheduler.Now;
            if (now - _lastOverBudgetWarning > TimeSpan.FromMinutes(1))
            {
                _lastOverBudgetWarning = now;
                _log.Warning("pool {0}: a client started more than {1} new sessions a second (affinity.new-sessions-per-client): its extra requests are served without being pinned (balancer_affinity_sessions_over_budget counts them)",
                    _pool.Name, _pool.Affinity.NewSessionsPerClient);
            }
        });
        Receive<TableFull>(_ =>
        {
            var now = Context.System.Scheduler.Now;
            if (now - _lastFullWarning > TimeSpan.FromMinutes(1))
            {
                _lastFullWarning = now;
                _log.Warning("pool {0}: affinity table at twice affinity.max-entries ({1}) before its buckets evicted: new sessions are balanced without being pinned meanwhile", _pool.Name, _pool.Affinity.MaxEntries);
            }
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(PoolSettings pool, Routing.PoolHandle handle, AffinityKey affinityKey, NodeSettings node) =>
        Akka.Actor.Props.Create(() => new AffinityStore(pool, handle, affinityKey, node));

    /// <summary>A store for affinity settings a reload changed: its table is new (made with them) and fills from the replicated buckets.</summary>
    public static Props PropsWithNewTable(PoolSettings pool, Routing.PoolHandle handle, AffinityKey affinityKey, NodeSettings node) =>
        Akka.Actor.Props.Create(() => new AffinityStore(pool, handle, affinityKey, node, true));

    /// <summary>
    /// A session this node's cache does not hold (<c>write = majority</c>): a child asks this node's
    /// replica and every reachable peer's store, and answers once a majority of the members running
    /// Balancer have; none is asked when too few are reachable.
    /// </summary>
    private void OnLookup(Lookup lookup)
    {
        var (reachable, needed) = ReachablePeers();
        if (reachable.Count + 1 < needed)
        {
            lookup.Found.TrySetResult(SessionLookup.Unconfirmed);
            return;
        }
        var id = ++_lastLookupId;
        var scheduler = Context.System.Scheduler;
        UnseenOf(BucketOf(lookup.Hash)).Add(lookup.Hash);
        Context.ActorOf(SessionLookupAggregator.Props(lookup, _table, () => scheduler.Now, id, BucketOf(lookup.Hash), reachable, needed, Self.Path.Elements, _replicator, _readTimeout),
            $"lookup-{(ulong)id}");
    }

    private static void Failed(object? request, Exception problem)
    {
        (request as WriteBatch)?.Acknowledge(problem);
    }

    private void AnswerRead(object? request, AffinityBucket? bucket)
    {
        switch (request)
        {
            case Reread reread:
                OnRereadBucket(reread, bucket);
                break;
            case PeerAsked peer:
                AffinityEntry? entry = bucket is not null && bucket.TryGetValue(peer.Hash, out var found) ? found : null;
                peer.ReplyTo.Tell(new PeerLookupAnswer(peer.Id, entry?.Backend, entry?.ExpiresAt.ToUnixTimeMilliseconds() ?? 0, entry?.Established ?? false, entry?.Provisional ?? false));
                break;
        }
    }

    private TimeSpan SweepEvery => TimeSpan.FromTicks(Math.Clamp(_pool.Affinity.Ttl.Ticks / 8, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromMinutes(1).Ticks));

    protected override void PreStart()
    {
        _log.Info($"pool {_pool.Name}: sessions in {_buckets.Length} replicated buckets of at most {_capacity} ({(_capacity * Serialization.AffinityBucketFormat.EntryBytes + 1023) / 1024} kB), written at most {WritesPerRound(1)} a delta round ({(int)_deltaRound.TotalMilliseconds} ms) so that gossip fits the {_frameBytes}-byte remoting frame");
        foreach (var bucket in _buckets)
        {
            _replicator.Tell(Dsl.Subscribe(bucket, Self));
        }
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IReachabilityEvent), typeof(ClusterEvent.IMemberEvent));
        Timers.StartPeriodicTimer(CheckReachability.Instance, CheckReachability.Instance, TimeSpan.FromSeconds(1));
        if (_adopted)
        {
            // An earlier store of this pool fed the table (this node rejoined as a new incarnation,
            // or the store restarted): what it holds, pins made while no store ran among them, is
            // written again, and merging with the cluster's replicas settles any session pinned
            // differently on both sides.
            var now = Context.System.Scheduler.Now;
            var live = _table.Entries.Where(e => e.Value.ExpiresAt > now).ToList();
            foreach (var (hash, entry) in live)
            {
                Enqueue(new Write(hash, entry, null));
            }
            _log.Info("pool {0}: carrying on with the {1} session(s) this node held; writing them to the replicated buckets", _pool.Name, live.Count);
        }
        ScheduleSweep();
    }

    /// <summary>
    /// Sweeps fall on the same wall-clock instants on every node (multiples of the sweep interval)
    /// and remove what expired before the same cutoff, so replicas hold the same entries between
    /// sweeps and gossip finds their digests equal instead of exchanging whole buckets.
    /// </summary>
    private void ScheduleSweep()
    {
        var every = (long)SweepEvery.TotalMilliseconds;
        var now = Context.System.Scheduler.Now.ToUnixTimeMilliseconds();
        Timers.StartSingleTimer("sweep", Sweep.Instance, TimeSpan.FromMilliseconds(every - now % every + 1));
    }

    /// <summary>
    /// The other members running Balancer that this node can reach, and how many nodes (this one
    /// included) make a majority: the replicator counts a member from Up until it is removed,
    /// leaving or not.
    /// </summary>
    private (List<Address> Reachable, int Needed) ReachablePeers()
    {
        var state = _cluster.State;
        var members = state.Members
            .Where(m => m.Status is MemberStatus.Up or MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down
                && (_role.Length == 0 || m.HasRole(_role)) && m.Address != _cluster.SelfAddress)
            .Select(m => m.Address)
            .ToList();
        var reachable = members.Where(address => state.Unreachable.All(u => u.Address != address)).ToList();
        return (reachable, (members.Count + 1) / 2 + 1);
    }

    /// <summary>
    /// Tells the table whether a majority is in sight. On the minority side of a partition, before
    /// the resolver has decided anything, this node is still a member, but what it pins cannot have
    /// been acknowledged by the cluster: those pins are provisional, so that the majority's pins of
    /// the same sessions win when the sides merge. Once the majority is back in sight, every bucket
    /// is read from a majority (and merged here) before pins count as the cluster's again, so that
    /// no provisional pin is confirmed over a pin of the majority's that gossip has not brought yet.
    /// </summary>
    private void OnReachabilityChanged()
    {
        var (reachable, needed) = ReachablePeers();
        if (reachable.Count + 1 < needed)
        {
            _rereading = null;
            if (_table.MajorityInSight)
            {
                _log.Info("pool {0}: a majority of the cluster is out of sight: new session pins are provisional until it is back", _pool.Name);
                _table.MajorityInSight = false;
            }
            return;
        }
        if (_table.MajorityInSight || _rereading is not null)
        {
            return;
        }
        _rereading = new Reread(_buckets.Length);
        foreach (var bucket in _buckets)
        {
            _replicator.Tell(Dsl.Get(bucket, new ReadMajority(_readTimeout), _rereading));
        }
    }

    /// <summary>One bucket of a re-read after the majority came back in sight: merged; the last one confirms the table.</summary>
    private void OnRereadBucket(Reread reread, AffinityBucket? bucket)
    {
        if (!ReferenceEquals(reread, _rereading))
        {
            return;
        }
        if (bucket is not null)
        {
            foreach (var (session, entry) in bucket.Entries)
            {
                reread.Moved += _table.Merge(session, entry) ? 1 : 0;
            }
        }
        if (--reread.Left > 0)
        {
            return;
        }
        _rereading = null;
        _table.MajorityInSight = true;
        _log.Info("pool {0}: a majority of the cluster is in sight again and its sessions are read: new session pins are the cluster's{1}",
            _pool.Name, reread.Moved > 0 ? $" ({reread.Moved} provisional pin(s) gave way to the majority's)" : "");
    }

    /// <summary>A re-read of every bucket under way, and how many buckets are still to come.</summary>
    private sealed class Reread(int left)
    {
        public int Left { get; set; } = left;

        public int Moved { get; set; }
    }

    private Reread? _rereading;

    /// <summary>Answers what is still waiting on this store, so that no request waits for an incarnation that is gone.</summary>
    protected override void PostStop()
    {
        var stopped = new InvalidOperationException("the affinity store stopped before the pin was written");
        foreach (var write in _pending.Values.SelectMany(w => w))
        {
            write.Acknowledged?.TrySetException(stopped);
        }
        _pending.Clear();
        // The node's incarnation ends (not this actor alone restarting): its successor joins anew.
        if (CoordinatedShutdown.Get(Context.System).ShutdownReason is not null)
        {
            _handle.LeftCluster();
        }
        _cluster.Unsubscribe(Self);
        _table.Detach(Self);
        base.PostStop();
    }

    private void OnSweep()
    {
        ScheduleSweep();
        var every = (long)SweepEvery.TotalMilliseconds;
        var cutoff = DateTimeOffset.FromUnixTimeMilliseconds(Context.System.Scheduler.Now.ToUnixTimeMilliseconds() / every * every);
        foreach (var hash in _table.Expired(cutoff))
        {
            _table.Forget(hash);
            UnseenOf(BucketOf(hash)).Remove(hash);
        }
        // Each node sweeps its own replica (a merge never brings an expired entry back), by what the
        // bucket holds rather than what the cache holds: the two can differ after a restart.
        foreach (var (key, bucket) in _latest)
        {
            if (bucket.Entries.Any(e => e.Value.ExpiresAt <= cutoff))
            {
                _replicator.Tell(Dsl.Update(key, AffinityBucket.Empty, WriteLocal.Instance, data => data.WithoutExpired(cutoff)));
            }
        }
    }

    /// <summary>Queues a pin (or an operator's clear) for the next paced flush.</summary>
    private void Enqueue(Write write)
    {
        var bucket = BucketOf(write.Hash);
        UnseenOf(bucket).Add(write.Hash);
        if (!_pending.TryGetValue(bucket, out var writes))
        {
            _pending[bucket] = writes = new List<Write>();
        }
        writes.Add(write);
        if (write.Acknowledged is not null)
        {
            // A majority write holds a first response back: write at once, together with the
            // pins already queued in this actor's mailbox (a busy node batches by itself; a
            // timer would add the scheduler's 10 ms tick or more to every new session).
            if (!_flushQueued)
            {
                _flushQueued = true;
                Self.Tell(Flush.Instance);
            }
        }
        else if (!Timers.IsTimerActive("flush"))
        {
            // A local write holds nothing back: gather longer, for fewer and larger deltas.
            Timers.StartSingleTimer("flush", Flush.Instance, LocalFlushDelay);
        }
    }

    /// <summary>
    /// Writes what was pinned in the last few milliseconds as one update per bucket: a busy node
    /// makes thousands of sessions a second, and one replicated update (and one delta) per
    /// session would cost far more than the sessions themselves. The replicator sends each peer,
    /// in one message, every delta it has not sent that peer yet, so this store hands it no more
    /// than fits a frame per round (<see cref="WritesPerRound"/>); a burst beyond that waits for the
    /// next round, and its callers with it.
    /// </summary>
    private void OnFlush()
    {
        var now = Context.System.Scheduler.Now;
        var rounds = PeerRounds();
        var perRound = WritesPerRound(rounds);
        // One round's worth a round: a peer's message gathers `rounds` of them.
        var refill = _allowanceAt == DateTimeOffset.MinValue ? perRound : (now - _allowanceAt).TotalMilliseconds / _deltaRound.TotalMilliseconds * perRound;
        _writeAllowance = Math.Min(perRound, _writeAllowance + refill);
        _allowanceAt = now;
        var waiting = false;
        // Starting one bucket further each flush, so that under a sustained burst no bucket waits behind the others.
        var buckets = _pending.Keys.ToList();
        var start = buckets.Count == 0 ? 0 : (int)(_flushes++ % (ulong)buckets.Count);
        foreach (var bucket in buckets.Skip(start).Concat(buckets.Take(start)))
        {
            var all = _pending[bucket];
            var take = (int)Math.Min(all.Count, Math.Floor(_writeAllowance));
            if (take == 0)
            {
                waiting = true;
                break;
            }
            _writeAllowance -= take;
            if (take < all.Count && all.Exists(w => w.Entry.IsCleared))
            {
                // New sessions go before an operator's clear: a client waits for them, nobody for it.
                var ordered = all.Where(w => !w.Entry.IsCleared).Concat(all.Where(w => w.Entry.IsCleared)).ToList();
                all.Clear();
                all.AddRange(ordered);
            }
            var writes = take == all.Count ? all : all.GetRange(0, take);
            if (take == all.Count)
            {
                _pending.Remove(bucket);
            }
            else
            {
                all.RemoveRange(0, take);
                waiting = true;
            }
            var batch = new WriteBatch(writes.Select(w => w.Acknowledged).Where(a => a is not null).ToList()!);
            var capacity = _capacity;
            var table = _table;
            var pins = writes.Select(w => new KeyValuePair<ulong, AffinityEntry>(w.Hash, w.Entry)).ToList();
            _replicator.Tell(Dsl.Update(bucket, AffinityBucket.Empty, _write, batch, data =>
            {
                data = data.SetAll(pins).WithCapacity(capacity);
                // A pin the full bucket evicted at once never shows in a change notification: the
                // cache drops it here (the table is safe to touch from the replicator's thread).
                foreach (var write in writes)
                {
                    if (!data.Contains(write.Hash))
                    {
                        table.Forget(write.Hash, write.Entry);
                    }
                }
                return data;
            }));
        }
        if (waiting && !Timers.IsTimerActive("flush"))
        {
            Timers.StartSingleTimer("flush", Flush.Instance, _deltaRound);
        }
    }

    /// <summary>
    /// How many delta rounds it takes the replicator to reach every peer: it sends to a slice of
    /// 2-10 peers a round (a fifth of them, plus one), so each peer's message gathers that many
    /// rounds of writes.
    /// </summary>
    private int PeerRounds()
    {
        var peers = _cluster.State.Members.Count(m => m.Status is MemberStatus.Up or MemberStatus.Leaving && (_role.Length == 0 || m.HasRole(_role))) - 1;
        if (peers <= 0)
        {
            return 1;
        }
        var slice = Math.Min(Math.Max(peers / 5 + 1, 2), Math.Min(peers, 10));
        return (peers + slice - 1) / slice;
    }

    /// <summary>
    /// Sessions written per round so that one peer's delta message stays within a third of the frame
    /// (a round's allowance, plus what accrues while its message waits), and never more than 64 kB
    /// of them, so a burst does not hold heartbeats up on the connection.
    /// </summary>
    private int WritesPerRound(int rounds) =>
        (int)Math.Max(1, Math.Min(_frameBytes / 3, 64 * 1024) / rounds / (Serialization.AffinityBucketFormat.EntryBytes + 2));

    private void OnClear(Clear clear)
    {
        var keys = clear.Hash is { } one
            ? (_table.Lookup(one) is null ? new List<ulong>() : [one])
            : _table.Snapshot().Keys.ToList();
        if (keys.Count == 0)
        {
            clear.Done.TrySetResult(0);
            return;
        }
        // Cleared like sessions are pinned, paced with them: clearing a full table at once would
        // be one delta of every session.
        var cleared = AffinityEntry.Cleared(Context.System.Scheduler.Now + _pool.Affinity.Ttl);
        var acknowledgements = new List<Task>(keys.Count);
        foreach (var hash in keys)
        {
            _table.Merge(hash, cleared);
            var acknowledged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            acknowledgements.Add(acknowledged.Task);
            Enqueue(new Write(hash, cleared, acknowledged));
        }
        var count = keys.Count;
        var done = clear.Done;
        Task.WhenAll(acknowledgements).ContinueWith(all =>
        {
            if (all.Exception is { } problem)
            {
                done.TrySetException(problem.InnerException ?? problem);
            }
            else
            {
                done.TrySetResult(count);
            }
        }, TaskScheduler.Default);
        _log.Info("pool {0}: {1} affinity {2} cleared by an operator", _pool.Name, keys.Count, keys.Count == 1 ? "entry" : "entries");
    }

    private AffinityBucketKey BucketOf(ulong hash) => _buckets[hash % (ulong)_buckets.Length];

    private HashSet<ulong> UnseenOf(AffinityBucketKey bucket)
    {
        if (!_unseen.TryGetValue(bucket, out var unseen))
        {
            _unseen[bucket] = unseen = new HashSet<ulong>();
        }
        return unseen;
    }

    /// <summary>
    /// Folds a new version of a bucket into the cache in one pass over both versions (sorted by
    /// hash): a session the previous version held and this one does not was evicted or swept on
    /// every node, and the cache drops it too (unless it holds a newer pin of its own); a session
    /// new or changed is merged; one unchanged was merged with the previous version. Returns how
    /// many live sessions pinned here provisionally the cluster moved to another backend.
    /// </summary>
    private int Fold(AffinityBucket? previous, AffinityBucket bucket)
    {
        var before = previous is null ? default : previous.Entries.AsSpan();
        var now = bucket.Entries.AsSpan();
        var moved = 0;
        int i = 0, j = 0;
        while (i < before.Length || j < now.Length)
        {
            if (j == now.Length || (i < before.Length && before[i].Key < now[j].Key))
            {
                _table.Forget(before[i].Key, before[i].Value);
                i++;
                continue;
            }
            var unchanged = i < before.Length && before[i].Key == now[j].Key && before[i].Value == now[j].Value;
            if (i < before.Length && before[i].Key == now[j].Key)
            {
                i++;
            }
            if (!unchanged && _table.Merge(now[j].Key, now[j].Value))
            {
                moved++;
            }
            j++;
        }
        return moved;
    }

    /// <summary>
    /// Drops from the cache the sessions of <paramref name="key"/> pinned here (or found by a lookup)
    /// that its bucket never showed: evicted at once when the bucket was full of better ones. A pin
    /// younger than two seconds is kept, as the bucket may not hold it yet, and so is a pin still
    /// queued for a paced flush.
    /// </summary>
    private void Reconcile(AffinityBucketKey key, AffinityBucket bucket)
    {
        if (!_unseen.TryGetValue(key, out var unseen) || unseen.Count == 0)
        {
            return;
        }
        var settled = Context.System.Scheduler.Now + _pool.Affinity.Ttl - TimeSpan.FromSeconds(2);
        // Pins still queued here (a paced burst) are not in the bucket yet.
        var queued = _pending.TryGetValue(key, out var writes) ? writes.Select(w => w.Hash).ToHashSet() : null;
        unseen.RemoveWhere(hash =>
        {
            if (bucket.Contains(hash))
            {
                return true;
            }
            if (queued?.Contains(hash) == true)
            {
                return false;
            }
            if (_table.Cached(hash) is not { } entry)
            {
                return true;
            }
            if (entry.ExpiresAt >= settled)
            {
                return false;
            }
            _table.Forget(hash, entry);
            return true;
        });
    }

    /// <summary>Replicate an entry; <see cref="Acknowledged"/> completes when the write consistency is met.</summary>
    public sealed record Write(ulong Hash, AffinityEntry Entry, TaskCompletionSource? Acknowledged);

    /// <summary>Read a session from a majority of nodes (write = majority, cache miss).</summary>
    public sealed record Lookup(ulong Hash, TaskCompletionSource<SessionLookup> Found);

    /// <summary>A peer's store asks for one session held by this node's replica.</summary>
    public sealed record PeerLookup(long Id, ulong Hash);

    /// <summary>This node's entry for a <see cref="PeerLookup"/>: no backend when it holds none; expiry in Unix ms.</summary>
    public sealed record PeerLookupAnswer(long Id, string? Backend, long ExpiresAt, bool Established = false, bool Provisional = false);

    private sealed record PeerAsked(long Id, ulong Hash, IActorRef ReplyTo);

    private sealed class CheckReachability
    {
        public static readonly CheckReachability Instance = new();
        private CheckReachability() { }
    }

    /// <summary>Clear one session or (Hash null) every session of the pool; <see cref="Done"/> gives how many were live.</summary>
    public sealed record Clear(ulong? Hash, TaskCompletionSource<int> Done);

    /// <summary>The data plane refused a client its first new session over <c>new-sessions-per-client</c>.</summary>
    public sealed class OverBudget
    {
        public static readonly OverBudget Instance = new();
        private OverBudget() { }
    }

    /// <summary>The data plane hit <c>max-entries</c>.</summary>
    public sealed class TableFull
    {
        public static readonly TableFull Instance = new();
        private TableFull() { }
    }

    private sealed class Flush
    {
        public static readonly Flush Instance = new();
        private Flush() { }
    }

    /// <summary>The callers waiting for one batched update.</summary>
    private sealed class WriteBatch(List<TaskCompletionSource> waiting)
    {
        public void Acknowledge(Exception? problem)
        {
            foreach (var acknowledged in waiting)
            {
                if (problem is null)
                {
                    acknowledged.TrySetResult();
                }
                else
                {
                    acknowledged.TrySetException(problem);
                }
            }
        }
    }

    private sealed class Sweep
    {
        public static readonly Sweep Instance = new();
        private Sweep() { }
    }
}
