using System.Text.Json.Serialization;
using Akka.Cluster;
using Balancer.Health;
using Balancer.Membership;
using Balancer.Routing;

namespace Balancer.Management;

/// <summary>
/// A state change an operator cares about, in one shape for <c>ctl cluster tail</c>, the status
/// page and alert webhooks.
/// </summary>
/// <param name="At">When this node saw it.</param>
/// <param name="Kind">backend-down, backend-up, backend-admin-state, pool-changed, panic, panic-over,
/// member-up, member-left, member-removed, node-unreachable, node-reachable, leader-changed, duty-changed,
/// backend-errors, backend-errors-over, backend-slow, backend-slow-over, config-applied, config-refused, config-drift, config-drift-over, config-source-unreachable, config-source-reachable.</param>
/// <param name="Text">One readable line.</param>
/// <param name="Node">The node that reports it.</param>
/// <param name="Pool">The pool concerned, if any.</param>
/// <param name="Backend">The backend concerned, if any.</param>
/// <param name="Member">The cluster member concerned, if any.</param>
/// <param name="NodeLocal">True when only the reporting node sees it (a passive ejection, its own
/// duty change); false when every node sees the same change (a probe verdict, a member's fate).</param>
public sealed record NotableEvent(
    DateTimeOffset At,
    string Kind,
    string Text,
    string Node,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Pool = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Backend = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Member = null,
    [property: JsonIgnore] bool NodeLocal = false)
{
    /// <summary>The kinds that alert webhooks receive.</summary>
    public static readonly IReadOnlySet<string> AlertKinds = new HashSet<string>(StringComparer.Ordinal)
    {
        "backend-down", "backend-up", "node-unreachable", "member-removed", "duty-changed", "panic", "panic-over",
        "backend-errors", "backend-errors-over", "backend-slow", "backend-slow-over", "store-rebuilt", "store-failing", "store-failing-over",
        "config-refused", "config-drift", "config-drift-over", "config-source-unreachable", "config-source-reachable",
    };

    /// <summary>The event types <see cref="From"/> understands (subscribe to these on the EventStream).</summary>
    public static readonly Type[] SourceTypes =
    [
        typeof(BackendHealthChanged), typeof(BackendAdminStateChanged), typeof(PoolConfigChanged), typeof(PoolPanicChanged), typeof(NodeDutyChanged),
        typeof(Alerts.BackendThresholdCrossed), typeof(DurableStoreRebuilt), typeof(DurableStoreFailing),
        typeof(ConfigurationApplied), typeof(ConfigurationRefused), typeof(ConfigurationDriftChanged), typeof(ConfigSourceReachability),
    ];

    /// <summary>The notable event a balancer or cluster event stands for, or null.</summary>
    public static NotableEvent? From(object source, string node, DateTimeOffset at) => source switch
    {
        BackendHealthChanged e => new(at, e.New == BackendHealth.Down ? "backend-down" : "backend-up",
            $"backend {e.Pool}/{e.Backend} is {(e.New == BackendHealth.Down ? "DOWN" : "UP")}: {e.Reason}", node, e.Pool, e.Backend,
            NodeLocal: e.Reason.StartsWith("passive:", StringComparison.Ordinal)),
        BackendAdminStateChanged e => new(at, "backend-admin-state",
            $"backend {e.Pool}/{e.Backend} admin state {e.Old.ToString().ToLowerInvariant()} -> {e.New.ToString().ToLowerInvariant()}, weight {e.Weight}", node, e.Pool, e.Backend),
        ConfigurationApplied e => new(at, "config-applied",
            $"configuration applied ({e.Source}): {(e.Change.IsEmpty && e.Change.NeedRestart.IsEmpty ? "nothing changed" : string.Join("; ", e.Change.Describe()))}", node, NodeLocal: true),
        ConfigurationDriftChanged e => new(at, e.Drifting ? "config-drift" : "config-drift-over",
            e.Drifting
                ? $"configuration drift: {e.Member} runs pools {e.Fingerprint} (cluster configuration version {e.Version}) while most members run other pools"
                : $"configuration drift over: {e.Member} runs the same pools as the others again", node, Member: e.Member),
        ConfigSourceReachability e => new(at, e.Reachable ? "config-source-reachable" : "config-source-unreachable",
            e.Reachable
                ? $"{e.Source} reachable again ({e.Endpoint}): catching up with what changed meanwhile"
                : $"{e.Source} unreachable ({e.Endpoint}: {e.Reason}): serving with the configuration and backends it had", node, NodeLocal: true),
        ConfigurationRefused e => new(at, "config-refused",
            $"configuration refused ({e.Source}), the running one stays: {string.Join("; ", e.Problems)}", node, NodeLocal: true),
        PoolConfigChanged e => new(at, "pool-changed",
            $"pool {e.Pool} backends now {string.Join(", ", e.Settings.Backends.Select(b => $"{b.Name}={b.Address}"))}", node, e.Pool),
        PoolPanicChanged e => new(at, e.Panic ? "panic" : "panic-over",
            e.Panic ? $"pool {e.Pool} in PANIC: {e.Healthy} of {e.Total} backends healthy, routing to all" : $"pool {e.Pool} out of panic: {e.Healthy} of {e.Total} backends healthy", node, e.Pool),
        // Each node judges its own traffic, so each sends its own.
        Alerts.BackendThresholdCrossed e => new(at, (e.Kind == "latency" ? "backend-slow" : "backend-errors") + (e.Over ? "" : "-over"),
            $"backend {e.Pool}/{e.Backend} {(e.Kind == "latency" ? "latency" : "errors")} {(e.Over ? "over" : "back under half of")} {e.Threshold}: {e.Measured} (this node's last window)",
            node, e.Pool, e.Backend, NodeLocal: true),
        DurableStoreRebuilt e => new(at, "store-rebuilt",
            $"durable store {e.Directory} could not be read ({e.Reason}): moved to {e.MovedTo}; this node starts empty and its peers fill it in", node, NodeLocal: true),
        DurableStoreFailing e => new(at, e.Failing ? "store-failing" : "store-failing-over",
            e.Failing ? $"durable store {e.Directory} cannot write ({e.Reason}): this node serves and replicates, but its changes are not stored on it"
                : $"durable store {e.Directory}: writes succeed again, every change is stored", node, NodeLocal: true),
        NodeDutyChanged e => new(at, "duty-changed", $"node {e.Node} is now {e.Duty.ToString().ToLowerInvariant()} (active node {e.ActiveNode})", node, Member: e.Node, NodeLocal: true),
        ClusterEvent.MemberUp e => MemberEvent(at, node, "member-up", e.Member, "is up"),
        ClusterEvent.MemberLeft e => MemberEvent(at, node, "member-left", e.Member, "is leaving"),
        ClusterEvent.MemberRemoved e => MemberEvent(at, node, "member-removed", e.Member, $"was removed (was {e.PreviousStatus.ToString().ToLowerInvariant()})"),
        ClusterEvent.UnreachableMember e => MemberEvent(at, node, "node-unreachable", e.Member, "is UNREACHABLE"),
        ClusterEvent.ReachableMember e => MemberEvent(at, node, "node-reachable", e.Member, "is reachable again"),
        ClusterEvent.LeaderChanged e => new(at, "leader-changed", $"cluster leader is now {e.Leader?.ToString() ?? "(none)"}", node, Member: e.Leader?.ToString()),
        _ => null,
    };

    private static NotableEvent MemberEvent(DateTimeOffset at, string node, string kind, Akka.Cluster.Member member, string what) =>
        new(at, kind, $"member {member.Address} {what}", node, Member: member.Address.ToString());

    /// <inheritdoc />
    public override string ToString() => $"{At:HH:mm:ss.fff} {Text}";
}
