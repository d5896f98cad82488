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
        if (settings.Node.AffinityKey.Length == 0 && settings.Pools.Any(p => p.Affinity.Mode != Configuration.AffinityMode.None))
        {
            Context.ActorOf(Affinity.AffinityKeyKeeper.Props(affinityKey, settings.Node.ReadTimeout, settings.Node.WriteTimeout, settings.Node.Role), "affinity-key");
        }
        // Frontends open where the node's duty says so (always, in active-active), and only after
        // the replicated state was read from the cluster: long after the stores above published.
        var duty = Context.ActorOf(Membership.DutyCoordinator.Props(settings, registry, affinityKey), "duty");
        if (settings.Node.DownSelfWhenStalled)
        {
            Context.ActorOf(Membership.StallGuard.Props(Context.System.Settings.Config), "stall-guard");
        }
        Receive<Frontends.FrontendOwner.Drain>(drain => duty.Forward(drain));
        var running = settings;
        var keyKeeperStarted = settings.Node.AffinityKey.Length == 0 && settings.Pools.Any(p => p.Affinity.Mode != Configuration.AffinityMode.None);
        Receive<ApplyConfiguration>(apply =>
        {
            var next = apply.Settings;
            var change = Configuration.ConfigurationChange.Between(running, next);
            foreach (var pool in change.PoolsAdded)
            {
                var handle = new PoolHandle(PoolSnapshotBuilder.Build(0, pool, _ => BackendRuntimeState.Default, _ => new Model.BackendCounters(), new Routing.LoadBalancing.AlgorithmState()));
                registry.Set(handle);
                pools.Tell(new ChildrenSupervisor.StartChild(PoolRouter.Props(pool, handle, writeTimeout: settings.Node.WriteTimeout, role: settings.Node.Role), pool.Name));
                if (pool.Affinity.Mode != Configuration.AffinityMode.None)
                {
                    affinity.Tell(new ChildrenSupervisor.StartChild(Affinity.AffinityStore.Props(pool, handle, affinityKey, settings.Node), pool.Name));
                }
            }
            foreach (var changed in change.PoolsChanged)
            {
                var pool = changed.Settings;
                var handle = registry.Find(pool.Name)!;
                if (changed.TransportChanged)
                {
                    handle.Reconnect(pool);
                }
                handle.Router.Tell(new PoolRouter.Reconfigure(pool));
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
            if (!keyKeeperStarted && settings.Node.AffinityKey.Length == 0 && next.Pools.Any(p => p.Affinity.Mode != Configuration.AffinityMode.None))
            {
                keyKeeperStarted = true;
                Context.ActorOf(Affinity.AffinityKeyKeeper.Props(affinityKey, settings.Node.ReadTimeout, settings.Node.WriteTimeout, settings.Node.Role), "affinity-key");
            }
            foreach (var frontend in change.FrontendsAdded)
            {
                dataPlane.FrontendCounters.TryAdd(frontend.Name, new FrontendCounters(frontend.Name));
            }
            duty.Tell(new Frontends.FrontendOwner.Reconfigure(next, change));
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
            Sender.Tell(change);
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

        /// <summary>Forward <paramref name="Message"/> to every child, keeping the sender.</summary>
        public sealed record Broadcast(object Message);

        /// <summary>Forward <paramref name="Message"/> to the child named <paramref name="Name"/>, if there is one.</summary>
        public sealed record ForwardTo(string Name, object Message);

        /// <summary>
        /// Send the child named <paramref name="Name"/> <paramref name="Drain"/> (null: stop it at once), stop it once it
        /// answers <see cref="Frontends.FrontendOwner.Drained"/>, then start <paramref name="Then"/> (its successor under the same name), if given.
        /// </summary>
        public sealed record Retire(string Name, object? Drain, StartChild? Then);

        // Children on their way out, and who takes their name after them.
        private readonly Dictionary<IActorRef, StartChild?> _retiring = new();

        public ChildrenSupervisor()
        {
            Receive<StartChild>(start =>
            {
                // The name is still taken by a child being retired: start once it has gone.
                if (_retiring.Keys.FirstOrDefault(c => c.Path.Name == start.Name) is { } leaving)
                {
                    _retiring[leaving] = start;
                    return;
                }
                Context.ActorOf(start.Props, start.Name);
            });
            Receive<ForwardTo>(forward =>
            {
                if (Context.Child(forward.Name) is { } child && !child.IsNobody())
                {
                    child.Forward(forward.Message);
                }
            });
            Receive<Retire>(retire =>
            {
                var child = Context.Child(retire.Name);
                if (child.IsNobody() || _retiring.ContainsKey(child))
                {
                    if (retire.Then is { } then)
                    {
                        Self.Tell(then);
                    }
                    return;
                }
                _retiring[child] = retire.Then;
                Context.Watch(child);
                if (retire.Drain is null)
                {
                    Context.Stop(child);
                }
                else
                {
                    child.Tell(retire.Drain);
                }
            });
            Receive<Frontends.FrontendOwner.Drained>(_ =>
            {
                if (_retiring.ContainsKey(Sender))
                {
                    Context.Stop(Sender);
                }
            });
            Receive<Terminated>(terminated =>
            {
                if (_retiring.Remove(terminated.ActorRef, out var then) && then is not null)
                {
                    Context.ActorOf(then.Props, then.Name);
                }
            });
            Receive<Broadcast>(broadcast =>
            {
                foreach (var child in Context.GetChildren())
                {
                    child.Forward(broadcast.Message);
                }
            });
        }
    }
}
