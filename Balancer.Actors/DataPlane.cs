using System.Collections.Concurrent;
using System.Collections.Immutable;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Event;
using Balancer.Frontends;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;

namespace Balancer;

/// <summary>
/// What serves traffic on a node: every pool's handle (its snapshot, affinity table and backend
/// client), the frontends' counters and listeners, and the cluster's affinity key.
/// <para>
/// An embedded Balancer's data plane lives and dies with its ActorSystem (the host owns both).
/// <c>balancer run</c> keeps one for the whole process and gives it to each incarnation of its
/// ActorSystem through <see cref="DataPlaneSetup"/>: when the cluster removes the node (downed by
/// the split-brain resolver, partitioned away, quarantined), the ActorSystem ends but the
/// listeners stay open and keep routing with the last snapshots, and the next incarnation adopts
/// them, its pool routers and affinity stores carrying on from the state the data plane holds.
/// </para>
/// </summary>
public sealed class DataPlane
{
    private readonly ConcurrentDictionary<string, IFrontendServer> _serving = new();
    private ActorSystem? _system;
    private volatile bool _keepServing;
    private volatile bool _stopping;
    private ImmutableHashSet<Address> _peers = ImmutableHashSet<Address>.Empty;

    /// <summary>A data plane to hand to every incarnation of a node's ActorSystem (with <see cref="DataPlaneSetup"/>).</summary>
    public DataPlane() : this(outlivesActorSystem: true)
    {
    }

    private DataPlane(bool outlivesActorSystem) => OutlivesActorSystem = outlivesActorSystem;

    /// <summary>The data plane of a system started without <see cref="DataPlaneSetup"/>: it ends with that system.</summary>
    internal static DataPlane OwnedBy() => new(outlivesActorSystem: false);

    /// <summary>True when the data plane stays up after its ActorSystem is removed from the cluster (given through <see cref="DataPlaneSetup"/>).</summary>
    public bool OutlivesActorSystem { get; }

    /// <summary>Every pool's handle, by name; the same objects in every incarnation.</summary>
    public PoolRegistry Pools { get; } = new();

    /// <summary>How many ActorSystems have run this data plane (1 for the first).</summary>
    public int Incarnation { get; private set; }

    /// <summary>The frontends serving while no ActorSystem has taken them over (between incarnations, or before the new one's duty opens them).</summary>
    public IReadOnlyCollection<string> ServingUnowned => _serving.Keys.ToArray();

    /// <summary>The other members any incarnation saw Up: where the next one asks to join.</summary>
    public IReadOnlySet<Address> KnownPeers => Volatile.Read(ref _peers);

    /// <summary>The address of the last incarnation (the node's own, to leave out of the seeds when it rejoins).</summary>
    public Address? SelfAddress { get; private set; }

    internal Affinity.AffinityKey AffinityKey { get; private set; } = null!;

    private BalancerSettings? _settings;

    /// <summary>
    /// The configuration the data plane runs: the first incarnation's, then each one applied since
    /// (a reload, the cluster's configuration); a later incarnation starts with it, not with its files.
    /// </summary>
    public BalancerSettings Settings => Volatile.Read(ref _settings) ?? throw new InvalidOperationException("no ActorSystem has run this data plane yet");

    internal void Reconfigured(BalancerSettings settings) => Volatile.Write(ref _settings, settings);

    /// <summary>The cluster's configuration applied last (null: none, the node's files alone).</summary>
    internal Configuration.ClusterConfiguration? AppliedClusterConfiguration { get; set; }

    internal ConcurrentDictionary<string, FrontendCounters> FrontendCounters { get; } = new();

    /// <summary>True from the moment this incarnation was removed from its cluster until the next one starts.</summary>
    internal bool KeepsServing => _keepServing;

    /// <summary>
    /// Binds the data plane to a starting incarnation. The first creates every pool's handle and
    /// frontend's counters from <paramref name="settings"/>; later ones keep them, and the
    /// configuration applied last (<see cref="Settings"/>).
    /// </summary>
    internal void Attach(ActorSystem system, BalancerSettings settings)
    {
        if (!OutlivesActorSystem && Incarnation > 0)
        {
            throw new InvalidOperationException("this data plane belongs to another ActorSystem");
        }
        Volatile.Write(ref _system, system);
        SelfAddress = ((ExtendedActorSystem)system).Provider.DefaultAddress;
        _keepServing = false;
        if (Incarnation++ > 0)
        {
            return;
        }
        _settings = settings;
        AffinityKey = new Affinity.AffinityKey(settings.Node.AffinityKey);
        // Handles exist before any actor runs, so frontends and embedders can read every pool at once.
        foreach (var pool in settings.Pools)
        {
            Pools.Set(PoolHandle.ForNewPool(pool));
        }
        foreach (var frontend in settings.Frontends)
        {
            FrontendCounters[frontend.Name] = new FrontendCounters(frontend.Name);
        }
    }

    /// <summary>Another member came up: the next incarnation may join through it.</summary>
    internal void SawPeer(Address peer)
    {
        if (!peer.Equals(SelfAddress))
        {
            ImmutableInterlocked.Update(ref _peers, peers => peers.Add(peer));
        }
    }

    /// <summary>
    /// The incarnation's cluster removed it: from now on its frontend actors hand their listeners
    /// over (<see cref="TryKeepServing"/>) instead of closing them.
    /// </summary>
    internal void KeepServing() => _keepServing = !_stopping;

    /// <summary>The process is stopping (SIGTERM): listeners close as their actors stop, none is kept any more.</summary>
    public void Stopping()
    {
        _stopping = true;
        _keepServing = false;
    }

    /// <summary>Keeps <paramref name="server"/> open past its frontend actor when the data plane outlives the incarnation; false when it is to be closed.</summary>
    internal bool TryKeepServing(string frontend, IFrontendServer server)
    {
        if (!_keepServing || _stopping)
        {
            return false;
        }
        _serving[frontend] = server;
        return true;
    }

    /// <summary>The listeners of <paramref name="frontend"/> kept open by an earlier incarnation, for its frontend actor to adopt.</summary>
    internal IFrontendServer? Adopt(string frontend) => _serving.TryRemove(frontend, out var server) ? server : null;

    /// <summary>Drains the listeners kept for frontends the running configuration no longer has (a reload removed them while no incarnation owned them).</summary>
    internal void DrainRemoved(TimeSpan timeout)
    {
        var configured = Settings.Frontends.Select(f => f.Name).ToHashSet();
        foreach (var name in _serving.Keys.Where(n => !configured.Contains(n)).ToArray())
        {
            if (Adopt(name) is { } server)
            {
                _ = Task.Run(async () =>
                {
                    await server.StopAsync(timeout).ConfigureAwait(false);
                    await server.DisposeAsync().ConfigureAwait(false);
                });
            }
        }
    }

    /// <summary>Stops, as a drain does, the listeners nobody adopted (the node stops before its new incarnation opened them).</summary>
    internal Task DrainUnownedAsync(TimeSpan timeout) => Task.WhenAll(_serving.Keys.ToArray().Select(async name =>
    {
        if (Adopt(name) is { } server)
        {
            await server.StopAsync(timeout).ConfigureAwait(false);
            await server.DisposeAsync().ConfigureAwait(false);
        }
    }));

    /// <summary>A logger for <paramref name="source"/> that writes to the current incarnation's log, so that listeners kept across incarnations stay heard.</summary>
    internal ILoggingAdapter Log(string source) => new IncarnationLog(this, source);

    private sealed class IncarnationLog(DataPlane dataPlane, string source) : LoggingAdapterBase(DefaultLogMessageFormatter.Instance)
    {
        // Replaced whole (never torn) when a new incarnation starts logging.
        private sealed record Current(ActorSystem System, ILoggingAdapter Log);

        private Current? _current;

        /// <summary>The running incarnation's logger; null between two incarnations (the lines go to standard error then).</summary>
        private ILoggingAdapter? Target
        {
            get
            {
                var system = Volatile.Read(ref dataPlane._system);
                if (system is null || system.WhenTerminated.IsCompleted)
                {
                    return null;
                }
                var current = Volatile.Read(ref _current);
                if (current is not null && ReferenceEquals(current.System, system))
                {
                    return current.Log;
                }
                var log = Logging.GetLogger(system, source);
                Volatile.Write(ref _current, new Current(system, log));
                return log;
            }
        }

        public override bool IsDebugEnabled => Target?.IsDebugEnabled ?? false;

        public override bool IsErrorEnabled => Target?.IsErrorEnabled ?? true;

        public override bool IsInfoEnabled => Target?.IsInfoEnabled ?? true;

        public override bool IsWarningEnabled => Target?.IsWarningEnabled ?? true;

        protected override void NotifyLog(LogLevel logLevel, object message, Exception? cause = null)
        {
            if (Target is not { } log)
            {
                Console.Error.WriteLine($"[{logLevel.ToString().Replace("Level", "").ToUpperInvariant()}][{DateTime.UtcNow:MM/dd/yyyy HH:mm:ss.fff}Z][{source}] {message}{(cause is null ? "" : " " + cause.Message)}");
                return;
            }
            if (message is LogMessage formatted)
            {
                log.Log(logLevel, cause, formatted);
            }
            else
            {
                log.Log(logLevel, cause, message.ToString() ?? "");
            }
        }
    }
}

/// <summary>
/// Gives an ActorSystem the <see cref="DataPlane"/> it runs Balancer on:
/// <code>ActorSystem.Create("balancer", BootstrapSetup.Create().WithConfig(config).And(new DataPlaneSetup(dataPlane)))</code>
/// Without it, the system's Balancer makes a data plane of its own that ends with the system.
/// </summary>
public sealed class DataPlaneSetup(DataPlane dataPlane) : Setup
{
    /// <summary>The data plane every incarnation given this setup runs on.</summary>
    public DataPlane DataPlane { get; } = dataPlane;
}
