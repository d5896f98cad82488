using System.Diagnostics.Metrics;
using Balancer.Frontends;
using Balancer.Membership;
using Balancer.Routing;

namespace Balancer.Telemetry;

/// <summary>
/// The node's metrics as System.Diagnostics.Metrics instruments on the meter <c>Balancer</c>, so that
/// OpenTelemetry or dotnet-counters can read them as well as <c>/metrics</c>. Every instrument is
/// observable: it reads the lock-free counters the data plane already keeps, at collection time,
/// so a request costs no listener callback.
/// </summary>
public sealed class BalancerMetrics : IDisposable
{
    /// <summary>Name of the meter.</summary>
    public const string MeterName = "Balancer";

    internal BalancerMetrics(PoolRegistry pools, Func<IEnumerable<FrontendCounters>> frontends, ClusterMembership membership, Func<int> incarnation)
    {
        Pools = pools;
        Meter = new Meter(MeterName, typeof(BalancerMetrics).Assembly.GetName().Version?.ToString());

        Meter.CreateObservableCounter("balancer.frontend.accepted", () => frontends().Select(f => new Measurement<long>(f.Accepted, Tag("frontend", f.Frontend))),
            description: "HTTP requests or TCP connections accepted by the frontend");
        Meter.CreateObservableCounter("balancer.frontend.fast_path", () => frontends().Select(f => new Measurement<long>(f.FastPath, Tag("frontend", f.Frontend))),
            description: "HTTP requests of the frontend forwarded by the HTTP/1.1 fast path (also counted in accepted)");
        Meter.CreateObservableUpDownCounter("balancer.frontend.open", () => frontends().Select(f => new Measurement<long>(f.Open, Tag("frontend", f.Frontend))),
            description: "HTTP requests or TCP connections in progress on the frontend");
        Meter.CreateObservableUpDownCounter("balancer.frontend.tunnels", () => frontends().Select(f => new Measurement<long>(f.Tunnels, Tag("frontend", f.Frontend))),
            description: "Upgraded connections (WebSockets) open on the frontend");
        Meter.CreateObservableCounter("balancer.frontend.refused", () => frontends().Select(f => new Measurement<long>(f.Refused, Tag("frontend", f.Frontend))),
            description: "TCP connections closed at accept because max-connections was reached");
        Meter.CreateObservableCounter("balancer.frontend.refused_per_client", () => frontends().Select(f => new Measurement<long>(f.RefusedPerClient, Tag("frontend", f.Frontend))),
            description: "Connections closed at accept because their client address had max-connections-per-client open");

        Meter.CreateObservableCounter("balancer.backend.requests", () => EachBackend(b => new Measurement<long>(b.Counters.Requests, BackendTags(b))),
            description: "Requests or connections sent to the backend");
        Meter.CreateObservableCounter("balancer.backend.grpc_responses", () => EachBackend(b => Enumerable.Range(0, 17)
                .Where(c => b.Counters.GrpcStatuses(c) > 0)
                .Select(c => new Measurement<long>(b.Counters.GrpcStatuses(c), BackendTags(b, ("grpc_status", Configuration.GrpcStatusSet.Names[c]))))),
            description: "gRPC calls the backend ended, by grpc-status");
        Meter.CreateObservableCounter("balancer.backend.responses", () => EachBackend(b => Enumerable.Range(1, 5)
                .Select(c => new Measurement<long>(b.Counters.Responses(c), BackendTags(b, ("class", $"{c}xx"))))),
            description: "Responses received from the backend, by status class");
        Meter.CreateObservableCounter("balancer.backend.failures", () => EachBackend(b => new[]
            {
                new Measurement<long>(b.Counters.ConnectFailures, BackendTags(b, ("kind", "connect"))),
                new Measurement<long>(b.Counters.ResponseFailures, BackendTags(b, ("kind", "response"))),
            }),
            description: "Connections to the backend that failed, and requests that failed after connecting");
        Meter.CreateObservableUpDownCounter("balancer.backend.in_flight", () => EachBackend(b => new Measurement<long>(b.Counters.InFlight, BackendTags(b))),
            description: "Requests or connections open on the backend");
        Meter.CreateObservableCounter("balancer.backend.ejections", () => EachBackend(b => new Measurement<long>(b.Counters.Ejections, BackendTags(b))),
            description: "Times passive health ejected the backend");
        Meter.CreateObservableGauge("balancer.backend.up", () => EachBackend(b => new Measurement<int>(b.Healthy ? 1 : 0, BackendTags(b))),
            description: "1 when health checks and passive health consider the backend up");
        Meter.CreateObservableGauge("balancer.backend.admin_state", () => EachBackend(b => new Measurement<int>(1, BackendTags(b, ("state", b.AdminState.ToString().ToLowerInvariant())))),
            description: "The operator's state of the backend (ready, drain or maint) as a label");
        Meter.CreateObservableGauge("balancer.backend.weight", () => EachBackend(b => new Measurement<int>(b.Weight, BackendTags(b))),
            description: "The weight routing uses now");

        Meter.CreateObservableCounter("balancer.pool.retries", () => pools.Pools.Values.Select(p => new Measurement<long>(p.Retries, Tag("pool", p.Name))),
            description: "Requests or connections retried on another backend after a connect failure");
        Meter.CreateObservableGauge("balancer.pool.panic", () => pools.Pools.Values.Select(p => new Measurement<int>(p.Snapshot.Panic ? 1 : 0, Tag("pool", p.Name))),
            description: "1 while the pool is in panic mode (too few healthy backends)");
        Meter.CreateObservableGauge("balancer.affinity.entries", () => EachAffinityTable(table => table.Count),
            description: "Session affinity entries known on this node");
        Meter.CreateObservableCounter("balancer.affinity.sessions_over_budget", () => EachAffinityTable(table => table.SessionsOverBudget),
            description: "New sessions served without being pinned: their client was over affinity.new-sessions-per-client");
        Meter.CreateObservableCounter("balancer.affinity.unconfirmed_pins", () => EachAffinityTable(table => table.UnconfirmedPins),
            description: "Sessions pinned on this node without the write consistency's confirmation (no majority in time, or no cluster while the node rejoined); they spread once the node can reach the others");
        Meter.CreateObservableCounter("balancer.affinity.sessions_moved_by_merge", () => EachAffinityTable(table => table.SessionsMovedByMerge),
            description: "Sessions this node pinned while it rejoined its cluster that the cluster had pinned to another backend, moved to the cluster's choice");

        Meter.CreateObservableGauge("balancer.cluster.members", () => membership.Current().Members
                .GroupBy(m => m.Status)
                .Select(g => new Measurement<int>(g.Count(), Tag("status", g.Key))),
            description: "Cluster members as this node sees them, by status");
        Meter.CreateObservableGauge("balancer.cluster.unreachable", () => membership.Current().Unreachable.Length,
            description: "Members this node's cluster view marks unreachable");
        Meter.CreateObservableGauge("balancer.node.incarnation", incarnation,
            description: "Which ActorSystem of this process runs the node: 1 at start, one more each time the cluster removed it and it rejoined while serving");
        Meter.CreateObservableGauge("balancer.process.gc_heap_bytes", () => GC.GetGCMemoryInfo().HeapSizeBytes,
            description: "Managed heap size after the last garbage collection");
        Meter.CreateObservableGauge("balancer.process.working_set_bytes", () => Environment.WorkingSet,
            description: "Physical memory the process uses (RSS)");
        Meter.CreateObservableGauge("balancer.node.active", () =>
            {
                var facts = membership.Current();
                return facts.Members.Any(m => m.Address == facts.Self && m.Duty == NodeDuty.Active) ? 1 : 0;
            },
            description: "1 when this node serves its frontends (always in active-active)");
    }

    /// <summary>The meter holding every instrument.</summary>
    public Meter Meter { get; }

    internal PoolRegistry Pools { get; }

    /// <inheritdoc />
    public void Dispose() => Meter.Dispose();

    private IEnumerable<Measurement<T>> EachBackend<T>(Func<Model.Backend, Measurement<T>> measure) where T : struct =>
        Pools.Pools.Values.SelectMany(p => p.Snapshot.Backends).Select(measure);

    private IEnumerable<Measurement<T>> EachBackend<T>(Func<Model.Backend, IEnumerable<Measurement<T>>> measure) where T : struct =>
        Pools.Pools.Values.SelectMany(p => p.Snapshot.Backends).SelectMany(measure);

    /// <summary>One measurement per pool with session affinity, tagged with the pool.</summary>
    private IEnumerable<Measurement<long>> EachAffinityTable(Func<Affinity.AffinityTable, long> measure) =>
        Pools.Pools.Values.Where(p => p.Affinity is not null).Select(p => new Measurement<long>(measure(p.Affinity!), Tag("pool", p.Name)));

    private static KeyValuePair<string, object?>[] Tag(string name, string value) => [new(name, value)];

    internal static KeyValuePair<string, object?>[] BackendTags(Model.Backend backend, params (string Name, string Value)[] more)
    {
        var tags = new KeyValuePair<string, object?>[2 + more.Length];
        tags[0] = new("pool", backend.Pool);
        tags[1] = new("backend", backend.Name);
        for (var i = 0; i < more.Length; i++)
        {
            tags[2 + i] = new(more[i].Name, more[i].Value);
        }
        return tags;
    }
}
