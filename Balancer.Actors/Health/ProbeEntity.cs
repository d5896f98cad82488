using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Routing;

namespace Balancer.Health;

/// <summary>
/// The Cluster.Sharding entity that hosts the one <see cref="HealthProbe"/> of a backend in the
/// whole cluster (<c>placement = sharded</c>). Every node keeps asking for the probes of the
/// backends it knows (<see cref="EnsureProbe"/>), so when the node hosting a shard dies the next
/// request starts the probe again on a survivor. An entity nobody asks for any more (its backend
/// was removed) passivates itself.
/// </summary>
internal sealed class ProbeEntity : ReceiveActor, IWithTimers
{
    internal const string TypeName = "balancer-probe";
    private static readonly TimeSpan Unwanted = TimeSpan.FromSeconds(15);

    private readonly Routing.PoolRegistry _pools;
    private PoolSettings? _checked;
    private readonly IActorRef _reporter;
    private readonly ProbeClients _clients;
    private IActorRef? _probe;
    private string? _address;

    public ProbeEntity(Routing.PoolRegistry pools, IActorRef reporter, ProbeClients clients)
    {
        _pools = pools;
        _reporter = reporter;
        _clients = clients;

        Receive<EnsureProbe>(ensure =>
        {
            Timers.StartSingleTimer("unwanted", Passivate.Instance, Unwanted);
            // The pool as this node runs it now: a reload may have changed its check or transport.
            var pool = _pools.Find(ensure.Pool)?.Snapshot.Settings;
            if (pool is null || pool.HealthCheck.Kind == HealthCheckKind.None || !EndpointAddress.TryParse(ensure.Address, out var address, out _))
            {
                if (_probe is not null)
                {
                    Context.Stop(_probe);
                    _probe = null;
                }
                return;
            }
            if (_probe is not null && _address == ensure.Address && _checked is { } running && HealthProbe.ChecksAlike(running, pool))
            {
                return;
            }
            if (_probe is not null)
            {
                Context.Stop(_probe);
            }
            _address = ensure.Address;
            _checked = pool;
            Context.GetLogger().Info("probing {0}/{1} ({2}) from this node", ensure.Pool, ensure.Backend, ensure.Address);
            var (client, transport) = _clients.For(pool);
            _probe = Context.ActorOf(HealthProbe.Props(ensure.Pool, new BackendSettings(ensure.Backend, address, 0), pool.HealthCheck, _reporter, client, transport: transport));
        });
        Receive<Passivate>(_ => Context.Parent.Tell(new Akka.Cluster.Sharding.Passivate(PoisonPill.Instance)));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(Routing.PoolRegistry pools, IActorRef reporter, ProbeClients clients) =>
        Akka.Actor.Props.Create(() => new ProbeEntity(pools, reporter, clients));

    /// <summary>Start (or keep) probing a backend; sent by every node about every backend it routes to.</summary>
    public sealed record EnsureProbe(string Pool, string Backend, string Address)
    {
        /// <summary>The entity id: one per backend in the cluster.</summary>
        public string EntityId => Pool + "/" + Backend;
    }

    private sealed class Passivate
    {
        public static readonly Passivate Instance = new();
        private Passivate() { }
    }

    /// <summary>Entity ids from <see cref="EnsureProbe"/>; shard ids from a hash that is the same on every node.</summary>
    internal sealed class MessageExtractor : IMessageExtractor
    {
        private readonly int _shards;

        public MessageExtractor(int shards) => _shards = shards;

        public string? EntityId(object message) => message is EnsureProbe ensure ? ensure.EntityId : null;

        public object? EntityMessage(object message) => message;

        public string ShardId(object message) => message is EnsureProbe ensure ? ShardOf(ensure.EntityId) : "0";

        public string ShardId(string entityId, object? messageHint = null) => ShardOf(entityId);

        private string ShardOf(string entityId) => (KeyHash.Of(entityId) % (ulong)_shards).ToString();
    }
}
