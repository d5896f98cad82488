using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Event;
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
/// The shard coordinator runs on the oldest member with Balancer's role; when that member does not
/// run Balancer (no <c>balancer.node.role</c> set in a cluster where some members do not start it),
/// no coordinator ever answers and no sharded probe would start. This node then says so, loudly and
/// once, and probes those pools' backends itself, as <c>every-node</c> placement does: no
/// configuration leaves backends unprobed. Likewise while any member is unreachable, and for
/// <see cref="ShardHandOverGrace"/> after: its probes are not running anywhere until it is downed
/// and its shards have a new home (detection, stable-after and hand-over take 10 s and more), so
/// every node probes the sharded backends itself meanwhile, and a backend that fails right after a
/// node died is out of rotation in the check's own detection time.
/// </summary>
internal sealed class HealthSupervisor : ReceiveActor, IWithTimers
{
    internal static readonly TimeSpan ReconcileInterval = TimeSpan.FromSeconds(1);

    /// <summary>How long this node may be Up without the shard coordinator answering before it probes sharded pools itself.</summary>
    internal static readonly TimeSpan CoordinatorWait = TimeSpan.FromSeconds(10);

    private readonly string _role;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private DateTimeOffset? _coordinatorMissingSince;
    private bool _probingShardedPoolsLocally;
    private DateTimeOffset _probeLocallyUntil = DateTimeOffset.MinValue;

    /// <summary>How long after the last unreachable member is gone this node keeps probing sharded pools itself.</summary>
    internal static readonly TimeSpan ShardHandOverGrace = TimeSpan.FromSeconds(10);

    private readonly PoolRegistry _pools;
    private readonly IActorRef _reporter;
    private IActorRef? _region;
    private readonly BalancerSettings _settings;
    private long _generation;
    private readonly Dictionary<string, (IActorRef Probe, EndpointAddress Address, PoolSettings Pool)> _localProbes = new();
    private readonly ProbeClients _clients = new();

    private readonly bool _rejoining = BalancerExtension.Get(Context.System).DataPlane.Incarnation > 1;

    public HealthSupervisor(BalancerSettings settings, PoolRegistry pools)
    {
        _pools = pools;
        _role = settings.Node.Role;
        _reporter = Context.ActorOf(HealthReporter.Props(), "reporter");
        _settings = settings;
        if (settings.Pools.Any(IsSharded))
        {
            StartRegion();
        }
        Receive<Reconcile>(_ =>
        {
            if (_stopping is null)
            {
                OnReconcile();
            }
        });
        Receive<CurrentRegions>(OnCurrentRegions);
        Receive<StopProbes>(_ => OnStopProbes());
        Receive<Terminated>(terminated =>
        {
            if (terminated.ActorRef.Equals(_region))
            {
                ProbesStopped();
            }
        });
        Receive<RegionStopTimedOut>(_ => ProbesStopped());
    }

    private static bool IsSharded(PoolSettings pool) => pool.HealthCheck.Kind != HealthCheckKind.None && pool.HealthCheck.Placement == ProbePlacement.Sharded;

    /// <summary>The probe region, started with the first pool probed that way (at start, or added by a reload).</summary>
    private void StartRegion() =>
        _region = ClusterSharding.Get(Context.System).Start(
            ProbeEntity.TypeName,
            ProbeEntity.Props(_pools, _reporter, _clients),
            // Shard placement lives in replicated data, never in the host's journal and snapshot store.
            ClusterShardingSettings.Create(Context.System)
                .WithRole(_settings.Node.Role.Length == 0 ? null : _settings.Node.Role)
                .WithStateStoreMode(StateStoreMode.DData)
                .WithRememberEntities(false),
            new ProbeEntity.MessageExtractor(_settings.Node.ProbeShards));

    // Who waits for the probes to stop (the node's coordinated shutdown); null until it starts.
    private IActorRef? _stopping;

    /// <summary>
    /// How long the probe region may take to stop before the node goes on leaving. Its shards hold
    /// nothing to hand over (a probe starts afresh anywhere), so it is stopped outright rather than
    /// handed off: with every member stopping at once, a hand-off waits for a coordinator that is
    /// leaving too, for the whole 10 s of its phase.
    /// </summary>
    internal static readonly TimeSpan RegionStopTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Stops the probes before the node leaves the cluster: no more EnsureProbe to a region on its
    /// way out (dead letters), and the probe region stopped at once; the coordinator gives its
    /// shards to the members that stay, which keep asking for their probes.
    /// </summary>
    private void OnStopProbes()
    {
        _stopping = Sender;
        Timers.Cancel("reconcile");
        foreach (var (probe, _, _) in _localProbes.Values)
        {
            Context.Stop(probe);
        }
        _localProbes.Clear();
        if (_region is null)
        {
            ProbesStopped();
            return;
        }
        Context.Watch(_region);
        _region.Tell(PoisonPill.Instance);
        Timers.StartSingleTimer("region-stop", RegionStopTimedOut.Instance, RegionStopTimeout);
    }

    private void ProbesStopped()
    {
        Timers.Cancel("region-stop");
        _stopping?.Tell(Akka.Done.Instance);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerSettings settings, PoolRegistry pools) =>
        Akka.Actor.Props.Create(() => new HealthSupervisor(settings, pools));

    protected override void PreStart()
    {
        Self.Tell(Reconcile.Instance);
        Timers.StartPeriodicTimer("reconcile", Reconcile.Instance, ReconcileInterval);
        var self = Self;
        CoordinatedShutdown.Get(Context.System).AddTask(CoordinatedShutdown.PhaseBeforeClusterShutdown, "balancer-probes-stop", async () =>
        {
            try
            {
                await self.Ask<Akka.Done>(StopProbes.Instance, RegionStopTimeout + TimeSpan.FromSeconds(1));
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
            }
            return Akka.Done.Instance;
        });
    }

    protected override void PostStop() => _clients.Dispose();

    private void OnReconcile()
    {
        var now = DateTimeOffset.UtcNow;
        var cluster = Cluster.Get(Context.System);
        if (_region is null && _pools.Pools.Values.Any(h => IsSharded(h.Snapshot.Settings)))
        {
            StartRegion();
        }
        // A node rejoining as a new incarnation serves before it is a member again: it probes its
        // backends itself meanwhile (no shard of the cluster's probes is its own yet).
        if (_region is not null && (cluster.State.Unreachable.Count > 0 || (_rejoining && cluster.SelfMember.Status != MemberStatus.Up)))
        {
            _probeLocallyUntil = now + ShardHandOverGrace;
        }
        var shardedLocally = _probingShardedPoolsLocally || now < _probeLocallyUntil;
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
                    if (!_probingShardedPoolsLocally)
                    {
                        _region?.Tell(new ProbeEntity.EnsureProbe(pool.Name, backend.Name, backend.Address.ToString()));
                    }
                    if (!shardedLocally)
                    {
                        continue;
                    }
                }
                var name = $"{pool.Name}.{backend.Name}";
                wanted.Add(name);
                if (_localProbes.TryGetValue(name, out var existing))
                {
                    if (existing.Address == backend.Address && HealthProbe.ChecksAlike(existing.Pool, pool))
                    {
                        continue;
                    }
                    Context.Stop(existing.Probe);
                    _localProbes.Remove(name);
                    continue; // the new probe starts on the next reconcile, once the old name is free
                }
                var (client, transport) = _clients.For(pool);
                var probe = Context.ActorOf(HealthProbe.Props(pool.Name, backend, pool.HealthCheck, _reporter, client, transport: transport), $"{Uri.EscapeDataString(name)}-{++_generation}");
                _localProbes[name] = (probe, backend.Address, pool);
            }
        }
        foreach (var name in _localProbes.Keys.Where(n => !wanted.Contains(n)).ToList())
        {
            Context.Stop(_localProbes[name].Probe);
            _localProbes.Remove(name);
        }
        if (_region is not null && !_probingShardedPoolsLocally)
        {
            // The region answers with no regions at all while it has no coordinator.
            _region.Tell(GetCurrentRegions.Instance);
        }
    }

    private void OnCurrentRegions(CurrentRegions regions)
    {
        var cluster = Cluster.Get(Context.System);
        if (regions.Regions.Count > 0 || cluster.SelfMember.Status != MemberStatus.Up)
        {
            _coordinatorMissingSince = null;
            return;
        }
        var now = DateTimeOffset.UtcNow;
        _coordinatorMissingSince ??= now;
        if (_probingShardedPoolsLocally || now - _coordinatorMissingSince < CoordinatorWait)
        {
            return;
        }
        _probingShardedPoolsLocally = true;
        var oldest = cluster.State.Members
            .Where(m => m.Status == MemberStatus.Up && (_role.Length == 0 || m.HasRole(_role)))
            .OrderBy(m => m, Member.AgeOrdering)
            .FirstOrDefault();
        _log.Warning(
            "health probes: no shard coordinator has answered for {0:0} s: the oldest member{1} ({2}) does not seem to run Balancer, " +
            "so sharded probes cannot start. This node now probes every backend itself. Set balancer.node.role (and that role in " +
            "akka.cluster.roles of the members that run Balancer) so that the probes are sharded among them.",
            CoordinatorWait.TotalSeconds, _role.Length == 0 ? "" : $" with role {_role}", oldest?.Address.ToString() ?? "unknown");
        Self.Tell(Reconcile.Instance);
    }

    private sealed class StopProbes
    {
        public static readonly StopProbes Instance = new();
        private StopProbes() { }
    }

    private sealed class RegionStopTimedOut
    {
        public static readonly RegionStopTimedOut Instance = new();
        private RegionStopTimedOut() { }
    }

    private sealed class Reconcile
    {
        public static readonly Reconcile Instance = new();
        private Reconcile() { }
    }
}
