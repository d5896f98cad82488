using System.Collections.Immutable;
using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Frontends;
using Balancer.Routing;

namespace Balancer.Membership;

/// <summary>This node's role in the balancer tier.</summary>
public enum NodeRole
{
    /// <summary>Frontends open, taking client traffic.</summary>
    Active,
    /// <summary>Frontends closed, ready to take over (active-passive standby).</summary>
    Passive,
}

/// <summary>
/// Opens and closes this node's frontends. Active-active: always open. Active-passive: open only on
/// the active node, which is the oldest Up member that this node can reach: the node a cluster
/// singleton would run on, except that a standby takes over as soon as the active node is
/// unreachable rather than once it has been downed, because two active balancers for a moment are
/// harmless and a dead one is not. Runs <c>hooks.on-active</c> / <c>on-passive</c> on each change.
/// </summary>
internal sealed class RoleCoordinator : ReceiveActor, IWithTimers
{
    // Cluster.State is updated by its own subscriber and may trail the event that woke us: look
    // again on a short timer too, so a decision never waits for the next membership event.
    private static readonly TimeSpan DecideInterval = TimeSpan.FromMilliseconds(250);

    private static readonly TimeSpan HookTimeout = TimeSpan.FromSeconds(30);

    private readonly BalancerSettings _settings;
    private readonly PoolRegistry _pools;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private IActorRef? _frontends;
    private bool _frontendsStopping;
    private NodeRole? _role;
    private int _generation;
    private readonly HashSet<UniqueAddress> _up = new();
    private readonly IActorRef _replicator = Akka.DistributedData.DistributedData.Get(Context.System).Replicator;
    private int _warmUpPending = -1;
    private Task _hooks = Task.CompletedTask;

    public RoleCoordinator(BalancerSettings settings, PoolRegistry pools)
    {
        _settings = settings;
        _pools = pools;
        Receive<ClusterEvent.MemberUp>(up =>
        {
            _up.Add(up.Member.UniqueAddress);
            _log.Info("cluster: member {0} is up ({1} up)", up.Member.Address, _up.Count);
            Decide();
        });
        Receive<ClusterEvent.MemberRemoved>(removed =>
        {
            _up.Remove(removed.Member.UniqueAddress);
            _log.Info("cluster: member {0} removed ({1} up)", removed.Member.Address, _up.Count);
            Decide();
        });
        Receive<ClusterEvent.IClusterDomainEvent>(_ => Decide());
        Receive<Akka.DistributedData.GetSuccess>(success => OnWarmUpAnswer(success.Request));
        Receive<Akka.DistributedData.NotFound>(notFound => OnWarmUpAnswer(notFound.Request));
        Receive<Akka.DistributedData.GetFailure>(failure => OnWarmUpAnswer(failure.Request));
        Receive<WarmUpDone>(_ =>
        {
            if (_warmUpPending >= 0)
            {
                _warmUpPending = 0;
                _log.Info("replicated state loaded from the cluster: opening frontends");
                SetRole(NodeRole.Active, _cluster.SelfAddress.ToString());
            }
        });
        Receive<DecideNow>(_ => Decide());
        Receive<ClusterEvent.CurrentClusterState>(_ => Decide());
        Receive<Terminated>(terminated =>
        {
            if (terminated.ActorRef.Equals(_frontends))
            {
                _frontends = null;
                _frontendsStopping = false;
                if (_role == NodeRole.Active)
                {
                    OpenFrontends();
                }
            }
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerSettings settings, PoolRegistry pools) =>
        Akka.Actor.Props.Create(() => new RoleCoordinator(settings, pools));

    private sealed class DecideNow
    {
        public static readonly DecideNow Instance = new();
        private DecideNow() { }
    }

    /// <summary>The active node of a cluster: the oldest Up member not unreachable from <paramref name="state"/>'s viewpoint.</summary>
    public static Member? ActiveMember(ClusterEvent.CurrentClusterState state, string role)
    {
        var unreachable = state.Unreachable.Select(m => m.UniqueAddress).ToImmutableHashSet();
        return state.Members
            .Where(m => m.Status == MemberStatus.Up && !unreachable.Contains(m.UniqueAddress) && (role.Length == 0 || m.HasRole(role)))
            .OrderBy(m => m, Member.AgeOrdering)
            .FirstOrDefault();
    }

    protected override void PreStart()
    {
        if (_settings.Node.Mode == NodeMode.ActiveActive)
        {
            // Active once this node is Up and has read the replicated state from a majority (see WarmUp).
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
            return;
        }
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));
        Timers.StartPeriodicTimer("decide", DecideNow.Instance, DecideInterval);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void Decide()
    {
        if (_settings.Node.Mode == NodeMode.ActiveActive)
        {
            // The MemberUp event can arrive before Cluster.SelfMember shows Up: trust either.
            if (_warmUpPending < 0 && (_up.Contains(_cluster.SelfUniqueAddress) || _cluster.SelfMember.Status == MemberStatus.Up))
            {
                WarmUp();
            }
            return;
        }
        // A node on its way out hands over: it closes its frontends (and runs on-passive).
        if (_cluster.SelfMember.Status is MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed)
        {
            SetRole(NodeRole.Passive, ActiveMember(_cluster.State, _settings.Node.Role)?.Address.ToString() ?? "none");
            return;
        }
        // A joining node has no say yet: it stays closed until it is Up itself.
        if (_cluster.SelfMember.Status != MemberStatus.Up)
        {
            return;
        }
        var active = ActiveMember(_cluster.State, _settings.Node.Role);
        if (active is null)
        {
            return;
        }
        SetRole(active.UniqueAddress.Equals(_cluster.SelfUniqueAddress) ? NodeRole.Active : NodeRole.Passive, active.Address.ToString());
    }

    /// <summary>
    /// A node that has just joined knows nothing of the sessions, drains and verdicts the cluster
    /// holds: serving at once would balance sticky sessions afresh and overwrite their entries.
    /// So it reads every replicated key from a majority first (which merges them into its replica
    /// and reaches the pools' routing actors and affinity stores), then opens its frontends; a
    /// majority that does not answer within the write timeout does not keep it closed.
    /// </summary>
    private void WarmUp()
    {
        var keys = new List<Akka.DistributedData.IKey>
        {
            Replication.ReplicatedKeys.RuntimeConfig,
            Replication.ReplicatedKeys.Health,
        };
        if (_settings.Node.AffinityKey.Length == 0 && _settings.Pools.Any(p => p.Affinity.Mode == AffinityMode.Cookie))
        {
            keys.Add(Replication.ReplicatedKeys.AffinityCookieKey);
        }
        foreach (var pool in _settings.Pools.Where(p => p.Affinity.Mode != AffinityMode.None))
        {
            keys.AddRange(Replication.ReplicatedKeys.AffinityBuckets(pool));
        }
        _warmUpPending = keys.Count;
        var read = new Akka.DistributedData.ReadMajority(_settings.Node.ReadTimeout);
        foreach (var key in keys)
        {
            _replicator.Tell(new Akka.DistributedData.Get(key, read, WarmUpRead.Instance));
        }
        Timers.StartSingleTimer("warm-up", WarmUpDone.Instance, _settings.Node.ReadTimeout + TimeSpan.FromSeconds(1));
    }

    private void OnWarmUpAnswer(object? request)
    {
        if (request is not WarmUpRead || _warmUpPending <= 0)
        {
            return;
        }
        if (--_warmUpPending == 0)
        {
            _warmUpPending = 1;
            // Subscribers hear of merged values at the next notification tick: give them that long.
            Timers.StartSingleTimer("warm-up", WarmUpDone.Instance, TimeSpan.FromMilliseconds(250));
        }
    }

    private sealed class WarmUpRead
    {
        public static readonly WarmUpRead Instance = new();
        private WarmUpRead() { }
    }

    private sealed class WarmUpDone
    {
        public static readonly WarmUpDone Instance = new();
        private WarmUpDone() { }
    }

    private void SetRole(NodeRole role, string activeNode)
    {
        if (_role == role)
        {
            return;
        }
        _role = role;
        _log.Info("node role: {0} (active node {1})", role.ToString().ToLowerInvariant(), activeNode);
        Context.System.EventStream.Publish(new NodeRoleChanged(_cluster.SelfAddress.ToString(), role, activeNode));
        if (role == NodeRole.Active)
        {
            OpenFrontends();
            RunHook(_settings.Node.OnActiveHook, role, activeNode);
        }
        else
        {
            CloseFrontends();
            RunHook(_settings.Node.OnPassiveHook, role, activeNode);
        }
    }

    private void OpenFrontends()
    {
        if (!_settings.Node.StartFrontends || _frontends is not null)
        {
            return;
        }
        // A previous generation may still be closing its listeners; names stay unique meanwhile.
        _frontends = Context.ActorOf(Akka.Actor.Props.Create(() => new BalancerGuardian.ChildrenSupervisor()), _generation++ == 0 ? "frontends" : $"frontends-{_generation}");
        Context.Watch(_frontends);
        foreach (var frontend in _settings.Frontends)
        {
            _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(frontend, _pools), frontend.Name));
        }
    }

    private void CloseFrontends()
    {
        if (_frontends is null || _frontendsStopping)
        {
            return;
        }
        _frontendsStopping = true;
        Context.Stop(_frontends);
    }

    private void RunHook(string command, NodeRole role, string activeNode)
    {
        if (string.IsNullOrWhiteSpace(command))
        {
            return;
        }
        var log = _log;
        var node = _cluster.SelfAddress.ToString();
        // Hooks run one after the other, in the order of the role changes, so a quick flap cannot
        // finish on-passive before the on-active it follows.
        _hooks = _hooks.ContinueWith(async _ =>
        {
            try
            {
                var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
                info.ArgumentList.Add("-c");
                info.ArgumentList.Add(command);
                info.Environment["BALANCER_ROLE"] = role.ToString().ToLowerInvariant();
                info.Environment["BALANCER_NODE"] = node;
                info.Environment["BALANCER_ACTIVE_NODE"] = activeNode;
                using var process = Process.Start(info)!;
                using var timeout = new CancellationTokenSource(HookTimeout);
                try
                {
                    await process.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                    log.Error("hook for role {0} did not finish within {1}s and was killed: {2}", role, HookTimeout.TotalSeconds, command);
                    return;
                }
                if (process.ExitCode == 0)
                {
                    log.Info("hook for role {0} ran: {1}", role.ToString().ToLowerInvariant(), command);
                }
                else
                {
                    log.Error("hook for role {0} exited with {1}: {2}", role.ToString().ToLowerInvariant(), process.ExitCode, command);
                }
            }
            catch (Exception e)
            {
                log.Error(e, "hook for role {0} could not run: {1}", role, command);
            }
        }, TaskScheduler.Default).Unwrap();
    }
}
