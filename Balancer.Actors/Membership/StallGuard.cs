using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Event;

namespace Balancer.Membership;

/// <summary>
/// Downs this node when its own process has stood still for so long that its view of the others
/// cannot be trusted (<c>balancer.node.down-self-when-stalled</c>). A starved or paused node reads
/// its peers' heartbeats late and takes them for unreachable; if it leads its side, its split-brain
/// resolver downs them while they down it, and each side goes on as a cluster of its own. Downing
/// itself first leaves the decision to the nodes that run. The node keeps serving with its last
/// state and rejoins as a new incarnation once it runs again, as any downed node does.
/// </summary>
internal sealed class StallGuard : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromMilliseconds(250);

    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private long _started;

    public StallGuard(TimeSpan limit, TimeSpan window)
    {
        Receive<Check>(_ =>
        {
            // Only this incarnation's stalls: the process's earlier ones were an earlier member's.
            var stalled = ProcessStalls.StalledWithin(window, _started);
            // Only while this node takes a member for unreachable: that view is the one a stall
            // makes suspect. (A stall of every node at once, a host's hiccup, leaves them all
            // seeing each other again, and none goes.)
            if (stalled < limit || _cluster.SelfMember.Status != MemberStatus.Up
                || _cluster.State.Members.Count(m => m.Status == MemberStatus.Up) < 2 || _cluster.State.Unreachable.Count == 0)
            {
                return;
            }
            _log.Warning("this process stood still for {0:0.0} s of the last {1:0} s (over {2:0.0} s): its view of the other members cannot be trusted; downing this node so that the members that run decide, and rejoining once it runs again",
                stalled.TotalSeconds, window.TotalSeconds, limit.TotalSeconds);
            Timers.CancelAll();
            _cluster.Down(_cluster.SelfAddress);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>
    /// The guard for a cluster configured as <paramref name="config"/> says: a limit of
    /// max(acceptable-heartbeat-pause, stable-after / 2) of standing still within 2 × stable-after,
    /// which the resolver of a starved leader would take to decide.
    /// </summary>
    public static Props Props(Config config)
    {
        var pause = config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause", TimeSpan.FromSeconds(3));
        var stableAfter = config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after", TimeSpan.FromSeconds(20));
        var limit = pause > stableAfter / 2 ? pause : stableAfter / 2;
        return Akka.Actor.Props.Create(() => new StallGuard(limit, stableAfter * 2));
    }

    protected override void PreStart()
    {
        ProcessStalls.EnsureWatching();
        _started = System.Diagnostics.Stopwatch.GetTimestamp();
        Timers.StartPeriodicTimer("check", Check.Instance, CheckInterval);
    }

    private sealed class Check
    {
        public static readonly Check Instance = new();
        private Check() { }
    }
}
