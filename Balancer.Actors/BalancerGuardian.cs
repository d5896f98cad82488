using Akka.Actor;
using Balancer.Frontends;
using Balancer.Routing;

namespace Balancer;

/// <summary>
/// The root of a node's balancer actors: <c>events</c> and <c>alerts</c> first, so that no state
/// change is missed, then <c>pools/&lt;pool&gt;</c> (routing), <c>health</c> (probes),
/// <c>duty</c> (active/passive, which owns <c>frontends/&lt;frontend&gt;</c>). Frontends start after
/// pools so that every frontend finds its pool's snapshot.
/// </summary>
internal sealed class BalancerGuardian : ReceiveActor
{
    public BalancerGuardian(BalancerSettings settings, DataPlane dataPlane, Management.EventFeed events)
    {
        var registry = dataPlane.Pools;
        Context.ActorOf(Management.EventFeedActor.Props(events), "events");
        Context.ActorOf(Alerts.AlertNotifier.Props(settings.Alerts, settings.Node.Role), "alerts");
        if (settings.Alerts.Thresholds.Any)
        {
            Context.ActorOf(Alerts.ThresholdWatch.Props(settings.Alerts.Thresholds, registry), "thresholds");
        }
        var pools = Context.ActorOf(Akka.Actor.Props.Create(() => new ChildrenSupervisor()), "pools");
        // Each pool's actors get the pool's handle and publish on it (snapshots, the router itself,
        // the affinity table); nothing finds them by path.
        foreach (var pool in settings.Pools)
        {
            pools.Tell(new ChildrenSupervisor.StartChild(PoolRouter.Props(pool, registry.Find(pool.Name)!, writeTimeout: settings.Node.WriteTimeout, role: settings.Node.Role), pool.Name));
        }
        Context.ActorOf(Health.HealthSupervisor.Props(settings, registry), "health");
        var affinity = Context.ActorOf(Akka.Actor.Props.Create(() => new ChildrenSupervisor()), "affinity");
        // The data plane's key: an earlier incarnation's sessions keep their hashes.
        var affinityKey = dataPlane.AffinityKey;
        foreach (var pool in settings.Pools.Where(p => p.Affinity.Mode != Configuration.AffinityMode.None))
        {
            affinity.Tell(new ChildrenSupervisor.StartChild(Affinity.AffinityStore.Props(pool, registry.Find(pool.Name)!, affinityKey, settings.Node), pool.Name));
        }
        // The cluster generates the affinity key when none is configured and a pool needs one (at start, or once a reload adds such a pool).
        var keyKeeperStarted = false;
        void EnsureAffinityKeyKeeper(BalancerSettings configured)
        {
            if (!keyKeeperStarted && settings.Node.AffinityKey.Length == 0 && configured.Pools.Any(p => p.Affinity.Mode != Configuration.AffinityMode.None))
            {
                keyKeeperStarted = true;
                Context.ActorOf(Affinity.AffinityKeyKeeper.Props(affinityKey, settings.Node.ReadTimeout, settings.Node.WriteTimeout, settings.Node.Role), "affinity-key");
            }
        }
        EnsureAffinityKeyKeeper(settings);
        // Frontends open where the node's duty says so (always, in active-active), and only after
        // the replicated state was read from the cluster: long after the stores above published.
        var duty = Context.ActorOf(Membership.DutyCoordinator.Props(settings, registry, affinityKey), "duty");
        if (settings.Node.DownSelfWhenStalled)
        {
            Context.ActorOf(Membership.StallGuard.Props(Context.System.Settings.Config), "stall-guard");
        }
        Receive<Frontends.FrontendOwner.Drain>(drain => duty.Forward(drain));
        var keeper = Context.ActorOf(Configuration.ClusterConfigurationKeeper.Props(BalancerExtension.Get(Context.System), settings.Node.Role, settings.Node.WriteTimeout,
            followReplicated: settings.Etcd is null), "cluster-config");
        Receive<Configuration.ClusterConfigurationKeeper.Publish>(publish => keeper.Forward(publish));
        if (settings.Etcd is { } etcd)
        {
            // The last keys etcd gave, kept beside the node's durable state (several nodes of one host may share data-dir).
            var cache = settings.Node.DataDir.Length == 0 ? "" : Path.Combine(settings.Node.DataDir, $"etcd-keys-{Akka.Cluster.Cluster.Get(Context.System).SelfAddress.Port}.json");
            Context.ActorOf(Configuration.EtcdSource.Props(etcd, keeper, pools, BalancerExtension.Get(Context.System).EtcdStatus, cache), "etcd");
        }
        var running = settings;
        Receive<ApplyConfiguration>(apply =>
        {
            // What takes effect only at the next start (node, alerts, telemetry) is reported, not applied.
            var next = apply.Settings with { Node = running.Node, Alerts = running.Alerts, Telemetry = running.Telemetry, Etcd = running.Etcd };
            var change = Configuration.ConfigurationChange.Between(running, apply.Settings);
            // Everything that can fail (certificate files read again) before anything changes.
            var added = new List<PoolHandle>();
            var reconnects = new List<Action>();
            try
            {
                foreach (var pool in change.PoolsAdded)
                {
                    added.Add(PoolHandle.ForNewPool(pool));
                }
                foreach (var changed in change.PoolsChanged.Where(c => c.TransportChanged))
                {
                    reconnects.Add(registry.Find(changed.Settings.Name)!.PrepareReconnect(changed.Settings));
                }
            }
            catch (Exception e)
            {
                added.ForEach(h => h.Dispose());
                Sender.Tell(new Status.Failure(new InvalidOperationException(e.GetBaseException().Message, e)));
                return;
            }
            foreach (var handle in added)
            {
                var pool = handle.Snapshot.Settings;
                registry.Set(handle);
                pools.Tell(new ChildrenSupervisor.StartChild(PoolRouter.Props(pool, handle, writeTimeout: settings.Node.WriteTimeout, role: settings.Node.Role), pool.Name));
                if (pool.Affinity.Mode != Configuration.AffinityMode.None)
                {
                    affinity.Tell(new ChildrenSupervisor.StartChild(Affinity.AffinityStore.Props(pool, handle, affinityKey, settings.Node), pool.Name));
                }
            }
            reconnects.ForEach(reconnect => reconnect());
            foreach (var changed in change.PoolsChanged)
            {
                var pool = changed.Settings;
                var handle = registry.Find(pool.Name)!;
                // Through the supervisor: the router of a pool added by the last reload may not have published itself yet.
                pools.Tell(new ChildrenSupervisor.ForwardTo(pool.Name, new PoolRouter.Reconfigure(pool)));
                if (changed.AffinityChanged)
                {
                    // A store (and its table) made with the old affinity settings goes; the new one
                    // reads the pool's sessions back from the replicated buckets.
                    affinity.Tell(new ChildrenSupervisor.Retire(pool.Name, null, pool.Affinity.Mode == Configuration.AffinityMode.None
                        ? null
                        : new ChildrenSupervisor.StartChild(Affinity.AffinityStore.PropsWithNewTable(pool, handle, affinityKey, settings.Node), pool.Name)));
                    if (pool.Affinity.Mode == Configuration.AffinityMode.None)
                    {
                        handle.ForgetAffinity();
                    }
                }
            }
            EnsureAffinityKeyKeeper(next);
            foreach (var frontend in change.FrontendsAdded)
            {
                dataPlane.FrontendCounters.TryAdd(frontend.Name, new FrontendCounters(frontend.Name));
            }
            var frontendsDone = duty.Ask<Akka.Done>(new Frontends.FrontendOwner.Reconfigure(running, next, change), TimeSpan.FromSeconds(8));
            foreach (var name in change.PoolsRemoved)
            {
                // Requests in flight keep the handle they began with; new ones no longer find it.
                registry.Remove(name);
                pools.Tell(new ChildrenSupervisor.Retire(name, null, null));
                affinity.Tell(new ChildrenSupervisor.Retire(name, null, null));
            }
            running = next;
            dataPlane.Reconfigured(next);
            Context.System.EventStream.Publish(new ConfigurationApplied(apply.Source, change));
            // Answered once the frontends changed in place route by the new settings.
            frontendsDone.ContinueWith(_ => change, TaskScheduler.Default).PipeTo(Sender);
        });
    }

    /// <summary>
    /// Apply <paramref name="Settings"/> (validated) in place of the running configuration: pools
    /// added, changed or removed, frontends too, each touched only when it changed. Answered with
    /// the <see cref="Configuration.ConfigurationChange"/> made.
    /// </summary>
    internal sealed record ApplyConfiguration(BalancerSettings Settings, string Source);

    public static Props Props(BalancerSettings settings, DataPlane dataPlane, Management.EventFeed events) =>
        Akka.Actor.Props.Create(() => new BalancerGuardian(settings, dataPlane, events));

    /// <summary>A plain parent for a group of children, addressed as <c>pools/NAME</c> or <c>frontends/NAME</c>.</summary>
    internal sealed class ChildrenSupervisor : ReceiveActor
    {
        public sealed record StartChild(Props Props, string Name);

        /// <summary>Forward <paramref name="Message"/> to every child (those being retired too), keeping the sender; a <see cref="Frontends.FrontendOwner.Drain"/> cancels the successors still waiting.</summary>
        public sealed record Broadcast(object Message);

        /// <summary>Forward <paramref name="Message"/> to the current child named <paramref name="Name"/>; with none, answer <see cref="Akka.Done"/>.</summary>
        public sealed record ForwardTo(string Name, object Message);

        /// <summary>
        /// Send the child named <paramref name="Name"/> <paramref name="Drain"/> (null: stop it at once)
        /// and stop it once it answers <see cref="Frontends.FrontendOwner.Drained"/>. Its successor
        /// <paramref name="Then"/>, if given, takes the name once the old child no longer listens
        /// (<see cref="Frontends.FrontendActor.Unbound"/>), or at once when <paramref name="Overlap"/>
        /// (both listen with SO_REUSEPORT, so the new listener can open before the old one closes).
        /// </summary>
        public sealed record Retire(string Name, object? Drain, StartChild? Then, bool Overlap = false);

        /// <summary>The children each name stands for now (a successor may run beside its predecessor).</summary>
        private readonly Dictionary<string, IActorRef> _current = new(StringComparer.Ordinal);

        // Children on their way out, and the successor waiting for each to stop listening.
        private readonly Dictionary<IActorRef, StartChild?> _retiring = new();
        private int _generation;

        public ChildrenSupervisor()
        {
            Receive<StartChild>(Start);
            Receive<ForwardTo>(forward =>
            {
                if (_current.TryGetValue(forward.Name, out var child))
                {
                    child.Forward(forward.Message);
                }
                else
                {
                    // Nobody to tell: whoever waits for an answer is not kept waiting.
                    Sender.Tell(Akka.Done.Instance);
                }
            });
            Receive<Retire>(retire =>
            {
                if (!_current.Remove(retire.Name, out var child))
                {
                    if (retire.Then is { } then)
                    {
                        Start(then);
                    }
                    return;
                }
                _retiring[child] = retire.Overlap ? null : retire.Then;
                if (retire.Overlap && retire.Then is { } successor)
                {
                    Start(successor);
                }
                if (retire.Drain is null)
                {
                    Context.Stop(child);
                }
                else
                {
                    child.Tell(retire.Drain);
                }
            });
            Receive<Frontends.FrontendActor.Unbound>(_ => StartSuccessorOf(Sender));
            Receive<Frontends.FrontendOwner.Drained>(_ =>
            {
                if (_retiring.ContainsKey(Sender))
                {
                    StartSuccessorOf(Sender);
                    Context.Stop(Sender);
                }
            });
            Receive<Terminated>(terminated =>
            {
                StartSuccessorOf(terminated.ActorRef);
                _retiring.Remove(terminated.ActorRef);
                foreach (var (name, child) in _current.Where(c => c.Value.Equals(terminated.ActorRef)).ToList())
                {
                    _current.Remove(name);
                }
            });
            Receive<Broadcast>(broadcast =>
            {
                if (broadcast.Message is Frontends.FrontendOwner.Drain)
                {
                    // Everything closes: no successor opens any more.
                    foreach (var leaving in _retiring.Keys.ToList())
                    {
                        _retiring[leaving] = null;
                    }
                }
                var children = Context.GetChildren().ToList();
                Sender.Tell(new BroadcastTo(children.Count));
                foreach (var child in children)
                {
                    child.Forward(broadcast.Message);
                }
            });
        }

        private void Start(StartChild start)
        {
            // The first child of a name takes it as its actor name; a successor, beside its predecessor, another.
            var child = Context.Child(start.Name).IsNobody() && !_current.ContainsKey(start.Name)
                ? Context.ActorOf(start.Props, start.Name)
                : Context.ActorOf(start.Props, $"{start.Name}~{++_generation}");
            Context.Watch(child);
            _current[start.Name] = child;
        }

        private void StartSuccessorOf(IActorRef leaving)
        {
            if (_retiring.TryGetValue(leaving, out var then) && then is not null)
            {
                _retiring[leaving] = null;
                Start(then);
            }
        }
    }

    /// <summary>How many children a <see cref="ChildrenSupervisor.Broadcast"/> reached: as many answers to expect.</summary>
    internal sealed record BroadcastTo(int Children);
}
