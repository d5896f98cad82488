using Akka.Actor;
using Akka.Cluster.Sharding;
using Balancer.Configuration;
using Balancer.Routing;

namespace Balancer.Health;

/// <summary>
/// Keeps the probes of every pool running where its <c>health-check.placement</c> wants them:
/// <c>sharded</c> pools get one <see cref="ProbeEntity"/> per backend in the cluster (this node keeps
/// asking the shard region for them), <c>every-node</c> pools a local <see cref="HealthProbe"/> per
/// backend. The backends are read from the pools' snapshots, so backends added or removed at runtime
/// gain or lose their probe on the next reconcile. Probes use one HTTP client that opens a fresh
/// connection per check, as HAProxy does, so a backend that cannot accept connections fails.
/// </summary>
internal sealed class HealthSupervisor : ReceiveActor, IWithTimers
{
    internal static readonly TimeSpan ReconcileInterval = TimeSpan.FromSeconds(1);

    private readonly PoolRegistry _pools;
    private readonly IActorRef _reporter;
    private readonly IActorRef? _region;
    private long _generation;
    private readonly Dictionary<string, (IActorRef Probe, EndpointAddress Address)> _localProbes = new();
    private readonly HttpMessageInvoker _client = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        PooledConnectionLifetime = TimeSpan.Zero,
        ConnectTimeout = TimeSpan.FromSeconds(10),
    });

    public HealthSupervisor(BalancerSettings settings, PoolRegistry pools)
    {
        _pools = pools;
        _reporter = Context.ActorOf(HealthReporter.Props(), "reporter");
        if (settings.Pools.Any(p => p.HealthCheck.Kind != HealthCheckKind.None && p.HealthCheck.Placement == ProbePlacement.Sharded))
        {
            _region = ClusterSharding.Get(Context.System).Start(
                ProbeEntity.TypeName,
                ProbeEntity.Props(settings, _reporter, _client),
                // Shard placement lives in replicated data, never in the host's journal and snapshot store.
                ClusterShardingSettings.Create(Context.System)
                    .WithRole(settings.Node.Role.Length == 0 ? null : settings.Node.Role)
                    .WithStateStoreMode(StateStoreMode.DData)
                    .WithRememberEntities(false),
                new ProbeEntity.MessageExtractor(settings.Node.ProbeShards));
        }
        Receive<Reconcile>(_ => OnReconcile());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerSettings settings, PoolRegistry pools) =>
        Akka.Actor.Props.Create(() => new HealthSupervisor(settings, pools));

    protected override void PreStart()
    {
        Self.Tell(Reconcile.Instance);
        Timers.StartPeriodicTimer("reconcile", Reconcile.Instance, ReconcileInterval);
    }

    protected override void PostStop() => _client.Dispose();

    private void OnReconcile()
    {
        var wanted = new HashSet<string>();
        foreach (var handle in _pools.Pools.Values)
        {
            var pool = handle.Snapshot.Settings;
            if (pool.HealthCheck.Kind == HealthCheckKind.None)
            {
                continue;
            }
            foreach (var backend in pool.Backends)
            {
                if (pool.HealthCheck.Placement == ProbePlacement.Sharded)
                {
                    _region?.Tell(new ProbeEntity.EnsureProbe(pool.Name, backend.Name, backend.Address.ToString()));
                    continue;
                }
                var name = $"{pool.Name}.{backend.Name}";
                wanted.Add(name);
                if (_localProbes.TryGetValue(name, out var existing))
                {
                    if (existing.Address == backend.Address)
                    {
                        continue;
                    }
                    Context.Stop(existing.Probe);
                    _localProbes.Remove(name);
                    continue; // the new probe starts on the next reconcile, once the old name is free
                }
                var probe = Context.ActorOf(HealthProbe.Props(pool.Name, backend, pool.HealthCheck, _reporter, _client), $"{Uri.EscapeDataString(name)}-{++_generation}");
                _localProbes[name] = (probe, backend.Address);
            }
        }
        foreach (var name in _localProbes.Keys.Where(n => !wanted.Contains(n)).ToList())
        {
            Context.Stop(_localProbes[name].Probe);
            _localProbes.Remove(name);
        }
    }

    private sealed class Reconcile
    {
        public static readonly Reconcile Instance = new();
        private Reconcile() { }
    }
}
