using System.Diagnostics;
using Akka.Actor;
using Akka.DistributedData;
using Akka.Event;

namespace Balancer.Replication;

/// <summary>
/// Keeps <see cref="BalancerReplicator.Trouble"/> true to what Balancer's replicator does: it
/// watches the replicator (one that stopped replicates nothing again in this incarnation) and
/// reads a key from it locally every 2 s, since a replicator that does not answer such a read
/// (stuck loading its durable store, which holds reads back, or its mailbox overrun) replicates
/// nothing either. <c>/readyz</c> reads it without asking any actor.
/// </summary>
internal sealed class ReplicatorWatch : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Silence = TimeSpan.FromSeconds(6);

    private readonly IActorRef _replicator;
    private readonly BalancerReplicator _owner;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    // Stopwatch timestamps: a wall clock that steps must not look like silence.
    private long _lastAnswer;

    public ReplicatorWatch(IActorRef replicator, BalancerReplicator owner)
    {
        _replicator = replicator;
        _owner = owner;
        Receive<IGetResponse>(_ =>
        {
            _lastAnswer = Stopwatch.GetTimestamp();
            if (_owner.Trouble is not null)
            {
                _log.Info("replication works again: the replicator answers");
                _owner.Trouble = null;
            }
        });
        Receive<Ask>(_ =>
        {
            var silent = Stopwatch.GetElapsedTime(_lastAnswer);
            if (silent > Silence && _owner.Trouble is null)
            {
                _owner.Trouble = new BalancerReplicator.ReplicationTrouble($"the replicator has not answered a local read for {silent.TotalSeconds:0} s", DateTimeOffset.UtcNow - silent);
                _log.Warning("replication may have stopped: {0}", _owner.Trouble.Reason);
            }
            Read();
        });
        Receive<Terminated>(_ =>
        {
            Timers.CancelAll();
            if (CoordinatedShutdown.Get(Context.System).ShutdownReason is not null)
            {
                // This incarnation is ending; its replicator goes with it.
                return;
            }
            _owner.Trouble = new BalancerReplicator.ReplicationTrouble("the replicator stopped", DateTimeOffset.UtcNow);
            // A node can serve on, but replicates nothing until it is restarted or rejoins.
            _log.Error("replication stopped: Balancer's replicator is gone; this node no longer shares or receives health, sessions or admin changes");
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef replicator, BalancerReplicator owner) => Akka.Actor.Props.Create(() => new ReplicatorWatch(replicator, owner));

    protected override void PreStart()
    {
        _lastAnswer = Stopwatch.GetTimestamp();
        Context.Watch(_replicator);
        Read();
        Timers.StartPeriodicTimer("ask", Ask.Instance, Every);
    }

    /// <summary>A local read of the health records: answered at once by a replicator that works.</summary>
    private void Read() => _replicator.Tell(Dsl.Get(ReplicatedKeys.Health, ReadLocal.Instance));

    private sealed class Ask
    {
        public static readonly Ask Instance = new();
        private Ask() { }
    }
}
