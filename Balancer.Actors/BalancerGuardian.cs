using Akka.Actor;
using Balancer.Frontends;
using Balancer.Routing;

namespace Balancer;

/// <summary>
/// The root of a node's balancer actors: <c>pools/&lt;pool&gt;</c> (routing) and
/// <c>frontends/&lt;frontend&gt;</c> (listeners). Frontends start after pools so that every frontend
/// finds its pool's snapshot.
/// </summary>
internal sealed class BalancerGuardian : ReceiveActor
{
    public BalancerGuardian(BalancerSettings settings, PoolRegistry registry)
    {
        var pools = Context.ActorOf(Akka.Actor.Props.Create(() => new ChildrenSupervisor()), "pools");
        foreach (var pool in settings.Pools)
        {
            pools.Tell(new ChildrenSupervisor.StartChild(PoolRouter.Props(pool, registry), pool.Name));
        }
        Context.ActorOf(Health.HealthSupervisor.Props(settings, pools.Path.ToStringWithoutAddress()), "health");
        if (settings.Node.StartFrontends)
        {
            var frontends = Context.ActorOf(Akka.Actor.Props.Create(() => new ChildrenSupervisor()), "frontends");
            foreach (var frontend in settings.Frontends)
            {
                frontends.Tell(new ChildrenSupervisor.StartChild(FrontendActor.Props(frontend, registry), frontend.Name));
            }
        }
    }

    public static Props Props(BalancerSettings settings, PoolRegistry registry) =>
        Akka.Actor.Props.Create(() => new BalancerGuardian(settings, registry));

    /// <summary>A plain parent for a group of children, addressed as <c>pools/NAME</c> or <c>frontends/NAME</c>.</summary>
    internal sealed class ChildrenSupervisor : ReceiveActor
    {
        public sealed record StartChild(Props Props, string Name);

        public ChildrenSupervisor()
        {
            Receive<StartChild>(start => Context.ActorOf(start.Props, start.Name));
        }
    }
}
