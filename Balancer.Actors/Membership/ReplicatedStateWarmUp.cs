using Akka.Actor;
using Akka.DistributedData;
using Balancer.Configuration;

namespace Balancer.Membership;

/// <summary>
/// A node that has just joined knows nothing of the sessions, drains and verdicts the cluster holds:
/// serving at once would balance sticky sessions afresh and overwrite their entries. This child
/// reads every replicated key from a majority (which merges them into the node's replica and so
/// reaches the pools' routing actors and affinity stores), tells its parent <see cref="Done"/>, and
/// stops. A majority that does not answer within <c>read-timeout</c> does not keep the node closed.
/// With pools that pin sessions, it also waits (up to <see cref="AffinityKeyWait"/>) for the
/// cluster's affinity key, which a new cluster generates once its oldest member is Up: sessions
/// made before it is known could not be pinned.
/// </summary>
internal sealed class ReplicatedStateWarmUp : ReceiveActor, IWithTimers
{
    // Subscribers hear of merged values at the replicator's next notification tick: give them that long.
    private static readonly TimeSpan NotifyTick = TimeSpan.FromMilliseconds(250);

    /// <summary>How long the node stays closed at most waiting for the cluster's affinity key.</summary>
    internal static readonly TimeSpan AffinityKeyWait = Affinity.AffinityKeyKeeper.OldestWait + TimeSpan.FromSeconds(3);

    private readonly BalancerSettings _settings;
    private readonly Affinity.AffinityKey? _affinityKey;
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private int _pending;

    public ReplicatedStateWarmUp(BalancerSettings settings, Affinity.AffinityKey? affinityKey)
    {
        _settings = settings;
        _affinityKey = settings.Pools.Any(p => p.Affinity.Mode != AffinityMode.None) ? affinityKey : null;
        Receive<GetSuccess>(_ => Answered());
        Receive<NotFound>(_ => Answered());
        Receive<GetFailure>(_ => Answered());
        Receive<Finish>(_ =>
        {
            if (_affinityKey is { Value: null } && DateTimeOffset.UtcNow - _started < AffinityKeyWait)
            {
                Timers.StartSingleTimer("finish", Finish.Instance, TimeSpan.FromMilliseconds(50));
                return;
            }
            Context.Parent.Tell(Done.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerSettings settings, Affinity.AffinityKey? affinityKey = null) =>
        Akka.Actor.Props.Create(() => new ReplicatedStateWarmUp(settings, affinityKey));

    protected override void PreStart()
    {
        var keys = new List<IKey>
        {
            Replication.ReplicatedKeys.RuntimeConfig,
            Replication.ReplicatedKeys.Health,
        };
        if (_settings.Node.AffinityKey.Length == 0 && _settings.Pools.Any(p => p.Affinity.Mode != AffinityMode.None))
        {
            keys.Add(Replication.ReplicatedKeys.AffinityKey);
        }
        foreach (var pool in _settings.Pools.Where(p => p.Affinity.Mode != AffinityMode.None))
        {
            keys.AddRange(Replication.ReplicatedKeys.AffinityBuckets(pool));
        }
        _pending = keys.Count;
        var read = new ReadMajority(_settings.Node.ReadTimeout);
        var replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
        foreach (var key in keys)
        {
            replicator.Tell(new Get(key, read));
        }
        Timers.StartSingleTimer("finish", Finish.Instance, _settings.Node.ReadTimeout + TimeSpan.FromSeconds(1));
    }

    private void Answered()
    {
        if (--_pending == 0)
        {
            Timers.StartSingleTimer("finish", Finish.Instance, NotifyTick);
        }
    }

    /// <summary>Every key was read (or the reads timed out): the node may serve.</summary>
    public sealed class Done
    {
        public static readonly Done Instance = new();
        private Done() { }
    }

    private sealed class Finish
    {
        public static readonly Finish Instance = new();
        private Finish() { }
    }
}
