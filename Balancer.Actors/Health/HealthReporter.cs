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
/// actor sees it within moments. Each verdict is numbered one above the highest this node has seen
/// for its backend (<see cref="HealthRecord.Sequence"/>), so no clock decides which verdict is the latest.
/// </summary>
internal sealed class HealthReporter : ReceiveActor
{
    private static readonly IWriteConsistency WriteToAll = new WriteAll(TimeSpan.FromSeconds(2));

    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly UniqueAddress _self = Cluster.Get(Context.System).SelfUniqueAddress;
    private readonly string _node = Cluster.Get(Context.System).SelfAddress.ToString();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, long> _highest = new();

    public HealthReporter()
    {
        Receive<Changed>(changed =>
        {
            foreach (var record in changed.Get(ReplicatedKeys.Health).Entries.Values)
            {
                Seen(record.Pool, record.Backend, record.Sequence);
            }
        });
        Receive<HealthProbe.Verdict>(verdict =>
        {
            var sequence = Seen(verdict.Pool, verdict.Backend, _highest.GetValueOrDefault(verdict.Pool + "/" + verdict.Backend) + 1);
            var record = new HealthRecord(verdict.Pool, verdict.Backend, _node, verdict.Up, verdict.Reason, Context.System.Scheduler.Now, sequence);
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

    protected override void PreStart() => _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.Health, Self));

    /// <summary>The highest sequence known for a backend, raised to <paramref name="sequence"/>; returns the new highest.</summary>
    private long Seen(string pool, string backend, long sequence)
    {
        var key = pool + "/" + backend;
        var highest = Math.Max(_highest.GetValueOrDefault(key), sequence);
        _highest[key] = highest;
        return highest;
    }

    public static Props Props() => Akka.Actor.Props.Create(() => new HealthReporter());
}
