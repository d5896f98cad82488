using Akka.Actor;
using Balancer.Configuration;
using Balancer.Frontends;
using Balancer.Membership;
using Balancer.Routing;
using Balancer.Telemetry;

namespace Balancer.Management;

/// <summary>
/// What the admin API may see and do on its node, and nothing more: the node's settings, pools,
/// membership, frontends, metrics and events, and a change sent to a pool's routing actor.
/// </summary>
internal sealed class AdminContext(
    Func<BalancerSettings> settings,
    PoolRegistry pools,
    ClusterMembership membership,
    PrometheusExporter prometheus,
    EventFeed events,
    Func<string, FrontendCounters> frontendCounters,
    ActorSystem system,
    RecentLog recentLog)
{
    public RecentLog RecentLog => recentLog;

    // The configuration applied last: a reload changes the frontends listed.
    public NodeSettings Node => settings().Node;

    public IReadOnlyList<FrontendSettings> Frontends => settings().Frontends;

    public PoolRegistry Pools => pools;

    public ClusterMembership Membership => membership;

    public PrometheusExporter Prometheus => prometheus;

    public EventFeed Events => events;

    public ActorSystem System => system;

    public FrontendCounters FrontendCounters(string frontend) => frontendCounters(frontend);

    /// <summary>
    /// Sends <paramref name="change"/> to the routing actor of <paramref name="pool"/> and waits for
    /// its answer, which comes once a majority confirmed the change or <c>write-timeout</c> passed.
    /// </summary>
    public Task<Status> ChangePoolAsync(string pool, object change) =>
        Pools.Find(pool)!.Router.Ask<Status>(change, Node.WriteTimeout + TimeSpan.FromSeconds(2));
}
