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
    }

    public static Props Props(BalancerSettings settings, DataPlane dataPlane, Management.EventFeed events) =>
        Akka.Actor.Props.Create(() => new BalancerGuardian(settings, dataPlane, events));

    /// <summary>A plain parent for a group of children, addressed as <c>pools/NAME</c> or <c>frontends/NAME</c>.</summary>
    internal sealed class ChildrenSupervisor : ReceiveActor
    {
        public sealed record StartChild(Props Props, string Name);

        /// <summary>Forward <paramref name="Message"/> to every child, keeping the sender.</summary>
        public sealed record Broadcast(object Message);

        public ChildrenSupervisor()
        {
            Receive<StartChild>(start => Context.ActorOf(start.Props, start.Name));
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
