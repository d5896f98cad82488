using System.Collections.Immutable;
using System.Net;
using Akka.Actor;
using Balancer.Model;

namespace Balancer.Routing;

/// <summary>
/// The data plane's handle on one pool: the current <see cref="PoolSnapshot"/> (swapped whole by the
/// pool's routing actor with a volatile write) and the pool's shared HTTP client.
/// </summary>
public sealed class PoolHandle : IDisposable
{
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PoolSnapshot _snapshot;
    private Affinity.AffinityTable? _affinity;
    private IActorRef _router = ActorRefs.Nobody;
    private long _retries;

    internal PoolHandle(PoolSnapshot initial)
    {
        _snapshot = initial;
        _backends = Connect(initial.Settings);
    }

    private BackendConnections _backends;

    /// <summary>The transport and the client made from it, swapped together when a reload changes how the pool reaches its backends.</summary>
    private sealed record BackendConnections(BackendTransport Transport, HttpMessageInvoker Client);

    // The handler settings YARP documents for a forwarder: no proxy, redirects, decompression or
    // cookies of its own, and no activity header propagation (the forwarder handles tracing headers).
    private static BackendConnections Connect(Configuration.PoolSettings settings)
    {
        var transport = new BackendTransport(settings);
        return new BackendConnections(transport, new HttpMessageInvoker(transport.CreateHandler(settings.ConnectTimeout, forProbes: false)));
    }

    /// <summary>
    /// A reload changes the pool's protocol, TLS or connect timeout: new requests use a new client.
    /// The old one is left to close its pooled connections as they idle out; disposing it would cut
    /// the requests and WebSockets still using it.
    /// </summary>
    /// <returns>What swaps the new client in; making it reads the pool's certificate files, and throws when they cannot be read.</returns>
    internal Action PrepareReconnect(Configuration.PoolSettings settings)
    {
        var connections = Connect(settings);
        return () => Volatile.Write(ref _backends, connections);
    }

    /// <summary>The backends registered in etcd, for a router that starts again.</summary>
    internal ImmutableArray<Configuration.BackendSettings> Registered { get; set; } = ImmutableArray<Configuration.BackendSettings>.Empty;

    /// <summary>The pool's configured settings as the last reload gave them (null: as the node started), for a router that starts again.</summary>
    internal Configuration.PoolSettings? Configured { get; set; }

    /// <summary>
    /// The handle of a pool no router has run yet: every backend with the default runtime state
    /// (at start, or a pool a reload adds), for frontends to find before the router publishes.
    /// </summary>
    internal static PoolHandle ForNewPool(Configuration.PoolSettings pool) =>
        new(PoolSnapshotBuilder.Build(0, pool, _ => BackendRuntimeState.Default, _ => new BackendCounters(), new LoadBalancing.AlgorithmState()));

    /// <summary>Completes once the pool's routing actor (and, with affinity, its affinity store) has published here.</summary>
    public Task Started => _started.Task;

    /// <summary>
    /// The pool's routing actor (<see cref="Routing.PoolRouter"/>): it takes <c>PoolRouter.SetAdminState</c>,
    /// <c>SetWeight</c>, <c>AddBackend</c>, <c>RemoveBackend</c> and <c>GetSnapshot</c>. Nobody until it has started.
    /// </summary>
    public IActorRef Router => Volatile.Read(ref _router);

    /// <summary>Name of the pool.</summary>
    public string Name => Snapshot.Name;

    /// <summary>The snapshot to route with; read it once per request.</summary>
    public PoolSnapshot Snapshot => Volatile.Read(ref _snapshot);

    /// <summary>The pool's replicated session-affinity table, or null when <c>affinity.mode = none</c>.</summary>
    public Affinity.AffinityTable? Affinity => Volatile.Read(ref _affinity);

    /// <summary>How many requests that reached a backend may still be sent again (<c>retry.budget</c>).</summary>
    public RetryBudget RetryBudget { get; } = new();

    /// <summary>What the pool speaks to its backends, and how it verifies them.</summary>
    public BackendTransport Transport => Volatile.Read(ref _backends).Transport;

    /// <summary>One client per pool so connections to its backends are pooled and reused.</summary>
    public HttpMessageInvoker HttpClient => Volatile.Read(ref _backends).Client;

    /// <summary>
    /// The pool router's view of each backend (health, ejection, admin state, slow start) and its
    /// counters, kept here so that a router that starts again (the node rejoined its cluster as a
    /// new incarnation, or the actor restarted) carries on from them. Only the pool's router,
    /// one at a time, touches them.
    /// </summary>
    internal Dictionary<string, Health.BackendTracker> Trackers { get; } = new();

    /// <inheritdoc cref="Trackers"/>
    internal Dictionary<string, BackendCounters> Counters { get; } = new();

    /// <summary>Requests or connections sent to another backend after a connect failure, since start.</summary>
    public long Retries => Volatile.Read(ref _retries);

    internal void CountRetry() => Interlocked.Increment(ref _retries);

    internal void Publish(PoolSnapshot snapshot) => Volatile.Write(ref _snapshot, snapshot);

    /// <summary>The routing actor announces itself once, when it starts.</summary>
    internal void PublishRouter(IActorRef router)
    {
        Volatile.Write(ref _router, router);
        CompleteStarted();
    }

    /// <summary>The pool's affinity store publishes the table it feeds, once, when it starts.</summary>
    internal void PublishAffinity(Affinity.AffinityTable table)
    {
        Volatile.Write(ref _affinity, table);
        if (_joinedCluster)
        {
            table.JoinedCluster();
        }
        CompleteStarted();
    }

    private volatile bool _joinedCluster;

    /// <summary>This incarnation of the node is a member and has read the cluster's replicas: its session pins are a member's (not provisional).</summary>
    internal void JoinedCluster()
    {
        _joinedCluster = true;
        Affinity?.JoinedCluster();
    }

    /// <summary>A reload changed or turned off the pool's affinity: the next store starts a table of its own.</summary>
    internal void ForgetAffinity() => Volatile.Write(ref _affinity, null);

    /// <summary>This incarnation's affinity store stopped: until the next one has joined, pins are provisional.</summary>
    internal void LeftCluster() => _joinedCluster = false;

    private void CompleteStarted()
    {
        var affinityExpected = Snapshot.Settings.Affinity.Mode != Configuration.AffinityMode.None;
        if (!Router.IsNobody() && (Affinity is not null || !affinityExpected))
        {
            _started.TrySetResult();
        }
    }

    /// <inheritdoc />
    public void Dispose() => HttpClient.Dispose();
}

/// <summary>Every pool's handle by name; replaced whole when pools are added or removed.</summary>
public sealed class PoolRegistry
{
    private ImmutableDictionary<string, PoolHandle> _pools = ImmutableDictionary<string, PoolHandle>.Empty;

    /// <summary>The handles by pool name.</summary>
    public ImmutableDictionary<string, PoolHandle> Pools => Volatile.Read(ref _pools);

    /// <summary>The handle of <paramref name="pool"/>, or null.</summary>
    public PoolHandle? Find(string pool) => Pools.TryGetValue(pool, out var handle) ? handle : null;

    internal void Set(PoolHandle handle) => ImmutableInterlocked.Update(ref _pools, p => p.SetItem(handle.Name, handle));

    internal void Remove(string pool) => ImmutableInterlocked.Update(ref _pools, p => p.Remove(pool));
}
