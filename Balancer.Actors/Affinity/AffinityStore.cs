using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Balancer.Configuration;

namespace Balancer.Affinity;

/// <summary>
/// One pool's replicated affinity table: session key → backend with an expiry, in
/// <c>buckets</c> <see cref="AffinityBucket"/> keys (<c>balancer-affinity-POOL-N</c>), so that no single
/// replicated value grows past what gossip carries well. It writes what the data plane pins (local or majority),
/// merges what other nodes write into the data plane's cache, and sweeps expired entries.
/// </summary>
internal sealed class AffinityStore : ReceiveActor, IWithTimers
{
    private readonly PoolSettings _pool;
    private readonly IWriteConsistency _write;
    private readonly IActorRef _replicator = DistributedData.Get(Context.System).Replicator;
    private readonly AffinityBucketKey[] _buckets;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private AffinityTable? _table;
    private DateTimeOffset _lastFullWarning = DateTimeOffset.MinValue;

    private readonly TimeSpan _writeTimeout;
    private readonly Dictionary<AffinityBucketKey, List<Write>> _pending = new();

    // Each bucket as last replicated to this node, to find the expired entries it still holds.
    private readonly Dictionary<AffinityBucketKey, AffinityBucket> _latest = new();

    /// <summary>How long pins gather before they are written together; a new session's first response may wait this much longer.</summary>
    internal static readonly TimeSpan FlushDelay = TimeSpan.FromMilliseconds(10);

    /// <summary>How long pins gather with <c>write = local</c>, where nobody waits for them.</summary>
    internal static readonly TimeSpan LocalFlushDelay = TimeSpan.FromMilliseconds(100);

    public AffinityStore(PoolSettings pool, TimeSpan writeTimeout, Routing.PoolRegistry registry)
    {
        _writeTimeout = writeTimeout;
        _table = registry.Find(pool.Name)?.Affinity;
        _pool = pool;
        _write = pool.Affinity.Write == AffinityWriteConsistency.Majority ? new WriteMajority(writeTimeout) : WriteLocal.Instance;
        _buckets = Replication.ReplicatedKeys.AffinityBuckets(pool);

        Receive<Write>(write =>
        {
            var bucket = BucketOf(write.Key);
            if (!_pending.TryGetValue(bucket, out var writes))
            {
                _pending[bucket] = writes = new List<Write>();
            }
            writes.Add(write);
            if (!Timers.IsTimerActive("flush"))
            {
                // A majority write holds a first response back: gather briefly. A local write
                // holds nothing back: gather longer, for fewer and larger deltas.
                Timers.StartSingleTimer("flush", Flush.Instance, write.Acknowledged is null ? LocalFlushDelay : FlushDelay);
            }
        });
        Receive<Flush>(_ => OnFlush());
        Receive<Lookup>(lookup =>
            _replicator.Tell(Dsl.Get(BucketOf(lookup.Key), new ReadMajority(_writeTimeout), lookup)));
        Receive<GetSuccess>(success =>
        {
            if (success.Request is not Lookup lookup)
            {
                return;
            }
            var bucket = success.Get(BucketOf(lookup.Key));
            if (bucket.TryGetValue(lookup.Key, out var entry) && entry.ExpiresAt > Context.System.Scheduler.Now && !entry.IsCleared)
            {
                _table?.Merge(lookup.Key, entry);
                lookup.Found.TrySetResult(entry.Backend);
            }
            else
            {
                lookup.Found.TrySetResult(null);
            }
        });
        Receive<NotFound>(notFound => (notFound.Request as Lookup)?.Found.TrySetResult(null));
        // A majority could not be asked in time: balance this request, but do not pin it, or the
        // new pin would overwrite the session's entry that the unreachable nodes still hold.
        Receive<GetFailure>(failure => (failure.Request as Lookup)?.Found.TrySetResult(AffinityTable.Unavailable));
        Receive<Clear>(OnClear);
        Receive<UpdateSuccess>(success =>
        {
            switch (success.Request)
            {
                case TaskCompletionSource acknowledged:
                    acknowledged.TrySetResult();
                    break;
                case WriteBatch batch:
                    batch.Acknowledge(null);
                    break;
                case ClearProgress progress:
                    progress.BucketDone();
                    break;
            }
        });
        Receive<UpdateTimeout>(timeout =>
        {
            var problem = new TimeoutException("affinity change applied on this node but not confirmed by a majority of nodes in time; it spreads by gossip");
            (timeout.Request as TaskCompletionSource)?.TrySetException(problem);
            (timeout.Request as WriteBatch)?.Acknowledge(problem);
            (timeout.Request as ClearProgress)?.Done.TrySetException(problem);
        });
        Receive<ModifyFailure>(failure =>
        {
            (failure.Request as TaskCompletionSource)?.TrySetException(failure.Cause);
            (failure.Request as WriteBatch)?.Acknowledge(failure.Cause);
            (failure.Request as ClearProgress)?.Done.TrySetException(failure.Cause);
        });
        Receive<Changed>(changed =>
        {
            if (_table is null || changed.Data is not AffinityBucket bucket || changed.Key is not AffinityBucketKey key)
            {
                return;
            }
            _latest[key] = bucket;
            // Entries already cached are skipped by reference.
            foreach (var (session, entry) in bucket.Entries)
            {
                _table.Merge(session, entry);
            }
        });
        Receive<Sweep>(_ => OnSweep());
        Receive<TableFull>(_ =>
        {
            var now = Context.System.Scheduler.Now;
            if (now - _lastFullWarning > TimeSpan.FromMinutes(1))
            {
                _lastFullWarning = now;
                _log.Warning("pool {0}: affinity table full ({1} entries, affinity.max-entries): new sessions are balanced without being pinned", _pool.Name, _pool.Affinity.MaxEntries);
            }
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(PoolSettings pool, TimeSpan writeTimeout, Routing.PoolRegistry registry) =>
        Akka.Actor.Props.Create(() => new AffinityStore(pool, writeTimeout, registry));

    protected override void PreStart()
    {
        foreach (var bucket in _buckets)
        {
            _replicator.Tell(Dsl.Subscribe(bucket, Self));
        }
        var sweepEvery = TimeSpan.FromTicks(Math.Clamp(_pool.Affinity.Ttl.Ticks / 8, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromMinutes(1).Ticks));
        Timers.StartPeriodicTimer("sweep", Sweep.Instance, sweepEvery);
    }

    private void OnSweep()
    {
        if (_table is null)
        {
            return;
        }
        var now = Context.System.Scheduler.Now;
        foreach (var key in _table.Expired(now))
        {
            _table.Forget(key);
        }
        // Each node sweeps its own replica (a merge never brings an expired entry back), by what the
        // bucket holds rather than what the cache holds: the two can differ after a restart.
        foreach (var (key, bucket) in _latest)
        {
            if (bucket.Entries.Any(e => e.Value.ExpiresAt <= now))
            {
                _replicator.Tell(Dsl.Update(key, AffinityBucket.Empty, WriteLocal.Instance, data => data.WithoutExpired(now)));
            }
        }
    }

    /// <summary>
    /// Writes what was pinned in the last few milliseconds as one update per bucket: a busy node
    /// makes thousands of sessions a second, and one replicated update (and one delta) per
    /// session would cost far more than the sessions themselves.
    /// </summary>
    private void OnFlush()
    {
        foreach (var (bucket, writes) in _pending)
        {
            var batch = new WriteBatch(writes.Select(w => w.Acknowledged).Where(a => a is not null).ToList()!);
            _replicator.Tell(Dsl.Update(bucket, AffinityBucket.Empty, _write, batch, data =>
            {
                foreach (var write in writes)
                {
                    data = data.Set(write.Key, write.Entry);
                }
                return data;
            }));
        }
        _pending.Clear();
    }

    private void OnClear(Clear clear)
    {
        if (_table is null)
        {
            clear.Done.TrySetResult(0);
            return;
        }
        var keys = clear.Key is { } one
            ? (_table.Lookup(one) is null ? new List<string>() : [one])
            : _table.Snapshot().Keys.ToList();
        if (keys.Count == 0)
        {
            clear.Done.TrySetResult(0);
            return;
        }
        var cleared = AffinityEntry.Cleared(Context.System.Scheduler.Now + _pool.Affinity.Ttl);
        var groups = keys.GroupBy(BucketOf).ToList();
        var progress = new ClearProgress(keys.Count, groups.Count, clear.Done);
        foreach (var group in groups)
        {
            var bucketKeys = group.ToList();
            foreach (var key in bucketKeys)
            {
                _table.Merge(key, cleared);
            }
            _replicator.Tell(Dsl.Update(group.Key, AffinityBucket.Empty, _write, progress, data =>
            {
                foreach (var key in bucketKeys)
                {
                    data = data.Set(key, cleared);
                }
                return data;
            }));
        }
        _log.Info("pool {0}: {1} affinity {2} cleared by an operator", _pool.Name, keys.Count, keys.Count == 1 ? "entry" : "entries");
    }

    private AffinityBucketKey BucketOf(string key) => _buckets[Routing.KeyHash.Of(key) % (ulong)_buckets.Length];

    /// <summary>Replicate an entry; <see cref="Acknowledged"/> completes when the write consistency is met.</summary>
    public sealed record Write(string Key, AffinityEntry Entry, TaskCompletionSource? Acknowledged);

    /// <summary>Read a session from a majority of nodes (write = majority, cache miss).</summary>
    public sealed record Lookup(string Key, TaskCompletionSource<string?> Found);

    /// <summary>Clear one session or (Key null) every session of the pool; <see cref="Done"/> gives how many were live.</summary>
    public sealed record Clear(string? Key, TaskCompletionSource<int> Done);

    private sealed class ClearProgress(int cleared, int buckets, TaskCompletionSource<int> done)
    {
        private int _pending = buckets;

        public TaskCompletionSource<int> Done { get; } = done;

        public void BucketDone()
        {
            if (--_pending == 0)
            {
                Done.TrySetResult(cleared);
            }
        }
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
