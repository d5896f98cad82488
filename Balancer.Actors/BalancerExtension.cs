using System.Collections.Concurrent;
using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Balancer.Frontends;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;

namespace Balancer;

/// <summary>
/// Balancer inside an ActorSystem: reads <c>balancer { }</c> (reference.conf as fallback), registers
/// every pool's snapshot handle and starts the actor tree under the system guardian.
/// <code>var balancer = BalancerExtension.Get(system);</code>
/// </summary>
public sealed partial class BalancerExtension : IExtension
{
    private readonly TaskCompletionSource _frontendsStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<string, IReadOnlyList<IPEndPoint>> _frontendEndPoints = new();
    private readonly ExtendedActorSystem _system;

    /// <summary>Created by <see cref="BalancerExtensionProvider"/>; use <see cref="Get"/>.</summary>
    public BalancerExtension(ExtendedActorSystem system)
    {
        _system = system;
        if (system.Provider is not Akka.Cluster.IClusterActorRefProvider)
        {
            throw new ConfigurationException("Balancer needs the cluster provider: set akka.actor.provider = cluster");
        }
        system.Settings.InjectTopLevelFallback(BalancerSettings.DefaultConfig());
        var configured = BalancerSettings.Create(system.Settings.Config);
        var selfRoles = Akka.Cluster.Cluster.Get(system).SelfRoles;
        if (configured.Node.Role.Length > 0 && !selfRoles.Contains(configured.Node.Role))
        {
            throw new ConfigurationException(
                $"balancer.node.role = \"{configured.Node.Role}\" but this node's akka.cluster.roles are [{string.Join(", ", selfRoles)}]: start Balancer only on nodes with that role");
        }
        // Bindings from reference.conf only count when it was there at system start; an embedding
        // system may load the extension later, so bind our serializer here as well.
        var serializer = new Serialization.BalancerSerializer(system);
        system.Serialization.AddSerializer("balancer", serializer);
        foreach (var type in Serialization.BalancerSerializer.BoundTypes)
        {
            system.Serialization.AddSerializationMap(type, serializer);
        }

        DataPlane = system.Settings.Setup.Get<DataPlaneSetup>().HasValue
            ? system.Settings.Setup.Get<DataPlaneSetup>().Value.DataPlane
            : DataPlane.OwnedBy();
        DataPlane.Attach(system, configured);

        // A standby opens its frontends only when it becomes active: nothing to wait for at start.
        var expected = Settings.Node.StartFrontends && Settings.Node.Mode == Configuration.NodeMode.ActiveActive
            ? Settings.Frontends.Select(f => f.Name).ToHashSet()
            : new HashSet<string>();
        if (expected.Count == 0)
        {
            _frontendsStarted.TrySetResult();
        }
        var watcher = system.SystemActorOf(Props.Create(() => new FrontendWatcher(this, expected)), "balancer-frontend-watcher");
        system.EventStream.Subscribe(watcher, typeof(FrontendStarted));
        system.EventStream.Subscribe(watcher, typeof(FrontendFailed));
        if (DataPlane.OutlivesActorSystem)
        {
            Akka.Cluster.Cluster.Get(system).Subscribe(watcher, Akka.Cluster.ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(Akka.Cluster.ClusterEvent.MemberUp));
        }

        foreach (var pool in Settings.Pools.Where(p => p.UsesTls && p.Tls is { Verify: false }))
        {
            // Said at every start: anyone between this node and the backends can read and change the traffic.
            Akka.Event.Logging.GetLogger(system, "balancer").Warning(
                "pool {0}: tls.verify = off: the backends' certificates are not checked, so TLS to them keeps out no one who can intercept the traffic", pool.Name);
        }
        Membership = new Membership.ClusterMembership(system, Settings.Node.Mode, Settings.Node.Role, ConfigurationStatus);
        RecentLog = Telemetry.RecentLog.Record(system);
        Metrics = new Telemetry.BalancerMetrics(Pools, () => DataPlane.FrontendCounters.Values, Membership, () => DataPlane.Incarnation);
        var otlp = Telemetry.OtlpExport.Start(Settings.Telemetry, system.Provider.DefaultAddress.ToString());
        Prometheus = new Telemetry.PrometheusExporter(Metrics);
        Client = new Client.BalancerClient(Pools, Events, Membership);
        Replication.BalancerReplicator.Get(system);
        Guardian = system.SystemActorOf(BalancerGuardian.Props(Settings, DataPlane, Events), "balancer");
        AdminStarted = Settings.Node.AdminEnabled ? StartAdmin(system) : Task.FromResult<Management.AdminServer?>(null);
        var shutdown = CoordinatedShutdown.Get(system);
        // Removed from the cluster without anyone asking (downed, partitioned away, a join that
        // never succeeded): a data plane that outlives this system keeps serving, and the next
        // incarnation takes it over. Active-passive is the exception: a node removed from its
        // cluster gives up the shared frontends, so that at most one side holds them.
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "balancer-data-plane-keep", () =>
        {
            if (DataPlane.OutlivesActorSystem && Settings.Node.Mode == Configuration.NodeMode.ActiveActive && KeepsServingThrough(shutdown.ShutdownReason))
            {
                DataPlane.KeepServing();
                Akka.Event.Logging.GetLogger(system, "balancer").Warning(
                    "this node was removed from the cluster ({0}): its frontends keep serving with the last state while a new incarnation rejoins",
                    shutdown.ShutdownReason?.GetType().Name ?? "no reason given");
            }
            return Task.FromResult(Akka.Done.Instance);
        });
        // A stop closes the listeners first and lets what is in flight finish, before the node
        // leaves the cluster (a later phase) and its actors stop.
        shutdown.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "balancer-frontends-drain", async () =>
        {
            if (DataPlane.KeepsServing)
            {
                return Akka.Done.Instance;
            }
            // With the listeners an earlier incarnation kept open that this one has not taken over yet.
            await Task.WhenAll(DrainFrontendsAsync(), DataPlane.DrainUnownedAsync(Settings.Node.DrainTimeout));
            return Akka.Done.Instance;
        });
        system.RegisterOnTermination(() =>
        {
            otlp?.Dispose();
            Prometheus.Dispose();
            Metrics.Dispose();
            if (!DataPlane.OutlivesActorSystem)
            {
                foreach (var handle in Pools.Pools.Values)
                {
                    handle.Dispose();
                }
            }
        });
    }

    private async Task DrainFrontendsAsync()
    {
        try
        {
            await Guardian.Ask<FrontendOwner.Drained>(new FrontendOwner.Drain(Settings.Node.DrainTimeout), Settings.Node.DrainTimeout + TimeSpan.FromSeconds(3));
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
        }
    }

    /// <summary>The cluster removed this node; nobody (SIGTERM, a leave) asked it to stop.</summary>
    private static bool KeepsServingThrough(CoordinatedShutdown.Reason? reason) =>
        reason is CoordinatedShutdown.ClusterDowningReason or CoordinatedShutdown.ClusterJoinUnsuccessfulReason;

    private Task<Management.AdminServer?> StartAdmin(ExtendedActorSystem system)
    {
        var admin = new Management.AdminContext(() => Settings, Pools, Membership, Prometheus, Events, FrontendCounters, system, RecentLog);
        var started = Task.Run(() => Management.AdminServer.StartAsync(admin));
        // The admin API answers until the node has left the cluster, so `ctl` can watch it go.
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseActorSystemTerminate, "balancer-admin-stop", async () =>
        {
            if (started.IsCompletedSuccessfully && started.Result is { } server)
            {
                await server.DisposeAsync();
            }
            return Akka.Done.Instance;
        });
        return started;
    }

    /// <summary>The extension of <paramref name="system"/>, started on first use.</summary>
    public static BalancerExtension Get(ActorSystem system) => system.WithExtension<BalancerExtension, BalancerExtensionProvider>();

    /// <summary>The node's last log lines (<c>ctl log peek</c>).</summary>
    public Telemetry.RecentLog RecentLog { get; }

    /// <summary>The validated settings the node runs with (the last configuration applied).</summary>
    public BalancerSettings Settings => DataPlane.Settings;

    /// <summary>Every pool's current snapshot, by name.</summary>
    public PoolRegistry Pools => DataPlane.Pools;

    /// <summary>What serves traffic: the pools' handles, the frontends' listeners and counters (see <see cref="Balancer.DataPlane"/>).</summary>
    public DataPlane DataPlane { get; }

    /// <summary>Members, leader, unreachable members and the active node, as this node sees them.</summary>
    public Membership.ClusterMembership Membership { get; }

    /// <summary>The root of the balancer's actors.</summary>
    public IActorRef Guardian { get; }

    /// <summary>
    /// The routing actor of <paramref name="pool"/>: it takes <c>PoolRouter.SetAdminState</c>,
    /// <c>SetWeight</c>, <c>AddBackend</c>, <c>RemoveBackend</c> and <c>GetSnapshot</c>
    /// (Nobody until <see cref="Started"/>).
    /// </summary>
    /// <exception cref="KeyNotFoundException">No such pool.</exception>
    public IActorRef PoolRouter(string pool) => (Pools.Find(pool) ?? throw new KeyNotFoundException($"no pool \"{pool}\"")).Router;

    /// <summary>Completes once every pool's routing actor and affinity store have started: from then on, admin changes and sessions are taken.</summary>
    public Task Started => Task.WhenAll(Pools.Pools.Values.Select(p => p.Started));

    /// <summary>The node's admin API once it listens (null when <c>balancer.node.admin.enabled = off</c>); faults when it cannot bind.</summary>
    public Task<Management.AdminServer?> AdminStarted { get; }

    /// <summary>Client-side balancing for the host's own outgoing calls: select a live, sticky backend of a pool.</summary>
    public Client.IBalancerClient Client { get; }

    /// <summary>The node's metrics (meter <c>Balancer</c>).</summary>
    public Telemetry.BalancerMetrics Metrics { get; }

    /// <summary>The metrics as Prometheus text, as <c>GET /metrics</c> serves them.</summary>
    public Telemetry.PrometheusExporter Prometheus { get; }

    /// <summary>Backend, pool, duty and membership changes as this node sees them.</summary>
    public Management.EventFeed Events { get; } = new();

    /// <summary>The traffic counters of the frontend named <paramref name="frontend"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such frontend is configured.</exception>
    public FrontendCounters FrontendCounters(string frontend) => DataPlane.FrontendCounters[frontend];

    /// <summary>Completes when every frontend listens; faults with the reason when one cannot.</summary>
    public Task FrontendsStarted => _frontendsStarted.Task;

    /// <summary>The addresses each started frontend listens on (port 0 resolved).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<IPEndPoint>> FrontendEndPoints => _frontendEndPoints;

    private sealed class FrontendWatcher : ReceiveActor
    {
        public FrontendWatcher(BalancerExtension extension, HashSet<string> waitingFor)
        {
            Receive<FrontendStarted>(started =>
            {
                extension._frontendEndPoints[started.Frontend] = started.EndPoints;
                waitingFor.Remove(started.Frontend);
                if (waitingFor.Count == 0)
                {
                    extension._frontendsStarted.TrySetResult();
                }
            });
            Receive<FrontendFailed>(failed =>
                extension._frontendsStarted.TrySetException(new InvalidOperationException($"frontend {failed.Frontend}: {failed.Reason}")));
            // The members a later incarnation may rejoin through.
            Receive<Akka.Cluster.ClusterEvent.MemberUp>(up => extension.DataPlane.SawPeer(up.Member.Address));
        }
    }
}

/// <summary>The <see cref="ExtensionIdProvider{T}"/> of <see cref="BalancerExtension"/>.</summary>
public sealed class BalancerExtensionProvider : ExtensionIdProvider<BalancerExtension>
{
    /// <inheritdoc />
    public override BalancerExtension CreateExtension(ExtendedActorSystem system) => new(system);
}
