using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Balancer.Replication;

namespace Balancer.Health;

/// <summary>
/// Replicates this node's probe verdicts: each <see cref="HealthProbe.Verdict"/> becomes a
/// <see cref="HealthRecord"/> under "POOL/BACKEND/THIS-NODE" in <see cref="ReplicatedKeys.Health"/>,
/// written to every reachable node at once (gossip covers the others), so every node's routing
/// actor sees it within moments.
/// </summary>
internal sealed class HealthReporter : ReceiveActor
{
    private static readonly IWriteConsistency WriteToAll = new WriteAll(TimeSpan.FromSeconds(2));

    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly UniqueAddress _self = Cluster.Get(Context.System).SelfUniqueAddress;
    private readonly string _node = Cluster.Get(Context.System).SelfAddress.ToString();
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public HealthReporter()
    {
        Receive<HealthProbe.Verdict>(verdict =>
        {
            var record = new HealthRecord(verdict.Pool, verdict.Backend, _node, verdict.Up, verdict.Reason, Context.System.Scheduler.Now);
            var key = ReplicatedKeys.HealthKeyOf(verdict.Pool, verdict.Backend, _node);
            _log.Debug("probe verdict {0}/{1}: {2} ({3})", verdict.Pool, verdict.Backend, verdict.Up ? "up" : "down", verdict.Reason);
            _replicator.Tell(Dsl.Update(ReplicatedKeys.Health, LWWDictionary<string, HealthRecord>.Empty, WriteToAll,
                map => map.SetItem(_self, key, record)));
        });
        // A write that did not reach every node is still local and spreads by gossip.
        Receive<UpdateSuccess>(_ => { });
        Receive<UpdateTimeout>(_ => { });
        Receive<ModifyFailure>(failure => _log.Error(failure.Cause, "could not record a probe verdict"));
    }

    public static Props Props() => Akka.Actor.Props.Create(() => new HealthReporter());
}
