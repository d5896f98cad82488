using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Frontends;
using Balancer.Routing;

namespace Balancer.Membership;

/// <summary>This node's duty in the balancer tier: active (serving) or passive (standing by).</summary>
public enum NodeDuty
{
    /// <summary>Frontends open, taking client traffic.</summary>
    Active,
    /// <summary>Frontends closed, ready to take over (active-passive standby).</summary>
    Passive,
}

/// <summary>
/// Decides whether this node serves: opens and closes its frontends (through its
/// <see cref="FrontendOwner"/> child) and runs the duty hooks on each change. Active-active: open
/// once this node is Up and has loaded the replicated state (<see cref="ReplicatedStateWarmUp"/>),
/// then always. Active-passive: open only on the active node, the oldest Up member that this node
/// can reach: the node a cluster singleton would run on, except that a standby takes over as soon
/// as the active node is unreachable rather than once it has been downed, because two active
/// balancers for a moment are harmless and a dead one is not.
/// </summary>
internal sealed class DutyCoordinator : ReceiveActor, IWithTimers
{
    // Cluster.State is updated by its own subscriber and may trail the event that woke us: look
    // again on a short timer too, so a decision never waits for the next membership event.
    private static readonly TimeSpan DecideInterval = TimeSpan.FromMilliseconds(250);

    private readonly BalancerSettings _settings;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly IActorRef _frontends;
    private readonly DutyHooks _hooks;
    // Counted from the events themselves: Cluster.State may trail them.
    private readonly HashSet<UniqueAddress> _up = new();
    private NodeDuty? _duty;

    private readonly Affinity.AffinityKey _affinityKey;
    private readonly PoolRegistry _pools;

    public DutyCoordinator(BalancerSettings settings, PoolRegistry pools, Affinity.AffinityKey affinityKey)
    {
        _settings = settings;
        _pools = pools;
        _affinityKey = affinityKey;
        _frontends = Context.ActorOf(FrontendOwner.Props(settings, pools), "frontend-owner");
        _hooks = new DutyHooks(_log, _cluster.SelfAddress.ToString());
        if (settings.Node.Mode == NodeMode.ActiveActive)
        {
            WaitingForUp();
        }
        else
        {
            Electing();
        }
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerSettings settings, PoolRegistry pools, Affinity.AffinityKey affinityKey) =>
        Akka.Actor.Props.Create(() => new DutyCoordinator(settings, pools, affinityKey));

    /// <summary>
    /// The active node of a cluster: the oldest Up member not unreachable from <paramref name="state"/>'s
    /// viewpoint (nor at <paramref name="gone"/>, a member an event just reported unreachable or
    /// removed that the state may not show yet).
    /// </summary>
    public static Member? ActiveMember(ClusterEvent.CurrentClusterState state, string role, string? gone = null)
    {
        var unreachable = state.Unreachable.Select(m => m.UniqueAddress).ToImmutableHashSet();
        return state.Members
            .Where(m => m.Status == MemberStatus.Up && !unreachable.Contains(m.UniqueAddress) && (role.Length == 0 || m.HasRole(role)) && m.Address.ToString() != gone)
            .OrderBy(m => m, Member.AgeOrdering)
            .FirstOrDefault();
    }

    /// <summary>
    /// True when the members this node reaches itself (<paramref name="reaches"/>: its own failure
    /// detector, not what other members report, so a cut between two others does not count) are,
    /// with it, a majority of the Up members running Balancer, or exactly half with the lowest
    /// address among them: the side the split-brain resolver (keep-majority) keeps.
    /// </summary>
    public static bool OnMajoritySide(ClusterEvent.CurrentClusterState state, string role, UniqueAddress self, Func<Member, bool> reaches)
    {
        var members = state.Members.Where(m => m.Status == MemberStatus.Up && (role.Length == 0 || m.HasRole(role))).ToList();
        if (members.Count == 0)
        {
            return true;
        }
        var reachable = members.Where(m => m.UniqueAddress.Equals(self) || reaches(m)).ToList();
        if (reachable.Count * 2 != members.Count)
        {
            return reachable.Count * 2 > members.Count;
        }
        var lowest = members.Select(m => m.Address).OrderBy(a => a, Member.AddressOrdering).First();
        return reachable.Any(m => m.Address.Equals(lowest));
    }

    protected override void PreStart()
    {
        if (_settings.Node.Mode == NodeMode.ActiveActive)
        {
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
            return;
        }
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));
        Timers.StartPeriodicTimer("decide", DecideNow.Instance, DecideInterval);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>Active-active, joining: closed until this node is Up.</summary>
    private void WaitingForUp()
    {
        Receive<ClusterEvent.MemberUp>(up =>
        {
            MemberUp(up.Member);
            // The MemberUp event can arrive before Cluster.SelfMember shows Up: trust either.
            if (up.Member.UniqueAddress.Equals(_cluster.SelfUniqueAddress) || _cluster.SelfMember.Status == MemberStatus.Up)
            {
                Context.ActorOf(ReplicatedStateWarmUp.Props(_settings, _affinityKey), "warm-up");
                Become(WarmingUp);
            }
        });
        ReceiveMembershipLog();
    }

    /// <summary>Active-active, Up: loading the replicated state before opening.</summary>
    private void WarmingUp()
    {
        Receive<ReplicatedStateWarmUp.Done>(_ =>
        {
            JoinedCluster();
            _log.Info(_settings.Node.StartFrontends && _settings.Frontends.Length > 0
                ? "replicated state loaded from the cluster: opening frontends"
                : "replicated state loaded from the cluster");
            SetDuty(NodeDuty.Active, _cluster.SelfAddress.ToString());
            Become(Serving);
        });
        ReceiveMembershipLog();
    }

    /// <summary>Active-active, serving: membership changes are only logged.</summary>
    private void Serving() => ReceiveMembershipLog();

    /// <summary>Active-passive: every membership or reachability change, and a short timer, re-decides.</summary>
    private void Electing()
    {
        Receive<ClusterEvent.MemberUp>(up =>
        {
            MemberUp(up.Member);
            Decide();
        });
        Receive<ClusterEvent.MemberRemoved>(removed =>
        {
            MemberRemoved(removed.Member);
            Decide();
        });
        Receive<ClusterEvent.IClusterDomainEvent>(_ => Decide());
        Receive<ClusterEvent.CurrentClusterState>(_ => Decide());
        Receive<DecideNow>(_ => Decide());
        Receive<FrontendOwner.Drain>(drain => _frontends.Forward(drain));
        Receive<FrontendOwner.Reconfigure>(reconfigure => _frontends.Forward(reconfigure));
    }

    private void ReceiveMembershipLog()
    {
        Receive<FrontendOwner.Drain>(drain => _frontends.Forward(drain));
        Receive<FrontendOwner.Reconfigure>(reconfigure => _frontends.Forward(reconfigure));
        Receive<ClusterEvent.MemberUp>(up => MemberUp(up.Member));
        Receive<ClusterEvent.MemberRemoved>(removed => MemberRemoved(removed.Member));
    }

    private void MemberUp(Member member)
    {
        _up.Add(member.UniqueAddress);
        _log.Info("cluster: member {0} is up ({1} up)", member.Address, _up.Count);
    }

    private void MemberRemoved(Member member)
    {
        _up.Remove(member.UniqueAddress);
        _log.Info("cluster: member {0} removed ({1} up)", member.Address, _up.Count);
    }

    private void Decide()
    {
        // A node on its way out hands over: it closes its frontends (and runs on-passive).
        if (_cluster.SelfMember.Status is MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed)
        {
            SetDuty(NodeDuty.Passive, ActiveMember(_cluster.State, _settings.Node.Role)?.Address.ToString() ?? "none");
            return;
        }
        // A joining node has no say yet: it stays closed until it is Up itself.
        if (_cluster.SelfMember.Status != MemberStatus.Up)
        {
            return;
        }
        // A node cut off with a minority of the members gives up at once, without waiting for the
        // split-brain resolver to down it: the majority side elects its own active node as soon as
        // this one is unreachable, and at most one side may hold the shared address.
        if (!OnMajoritySide(_cluster.State, _settings.Node.Role, _cluster.SelfUniqueAddress, m => _cluster.FailureDetector.IsAvailable(m.Address)))
        {
            SetDuty(NodeDuty.Passive, "none reachable from the minority side");
            return;
        }
        JoinedCluster();
        var active = ActiveMember(_cluster.State, _settings.Node.Role);
        if (active is null)
        {
            return;
        }
        SetDuty(active.UniqueAddress.Equals(_cluster.SelfUniqueAddress) ? NodeDuty.Active : NodeDuty.Passive, active.Address.ToString());
    }

    /// <summary>The cluster's replicas are read: from now on this node's session pins are a member's, not provisional.</summary>
    private void JoinedCluster()
    {
        foreach (var handle in _pools.Pools.Values)
        {
            handle.JoinedCluster();
        }
    }

    private void SetDuty(NodeDuty duty, string activeNode)
    {
        if (_duty == duty)
        {
            return;
        }
        _duty = duty;
        // Without frontends (an embedded client-only balancer) the duty changes nothing worth a line.
        _log.Log(_settings.Node.StartFrontends && _settings.Frontends.Length > 0 ? LogLevel.InfoLevel : LogLevel.DebugLevel,
            $"node duty: {duty.ToString().ToLowerInvariant()} (active node {activeNode})");
        Context.System.EventStream.Publish(new NodeDutyChanged(_cluster.SelfAddress.ToString(), duty, activeNode));
        _frontends.Tell(duty == NodeDuty.Active ? FrontendOwner.Open.Instance : FrontendOwner.Close.Instance);
        _hooks.Run(duty == NodeDuty.Active ? _settings.Node.OnActiveHook : _settings.Node.OnPassiveHook, duty, activeNode);
    }

    private sealed class DecideNow
    {
        public static readonly DecideNow Instance = new();
        private DecideNow() { }
    }
}
