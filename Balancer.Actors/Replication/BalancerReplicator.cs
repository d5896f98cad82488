using System.Collections.Immutable;
using Akka.Actor;
using Akka.Configuration;
using Akka.DistributedData;
using Akka.Event;

namespace Balancer.Replication;

/// <summary>
/// Balancer's own <see cref="Replicator"/>, beside (never instead of) the host's: its settings come
/// from <c>balancer.replication</c> over <c>akka.cluster.distributed-data</c>, it runs only on the
/// members with <c>balancer.node.role</c> (so majorities count Balancer members only), and its
/// durable store lives under <c>balancer.node.data-dir</c>, so an embedding host gets durable runtime
/// configuration without touching its own Distributed Data settings.
/// <code>var replicator = BalancerReplicator.Get(system).Replicator;</code>
/// </summary>
public sealed class BalancerReplicator : IExtension
{
    /// <summary>The replicator's name under <c>/system</c>; every member finds its peers at the same path.</summary>
    public const string Name = "balancer-replicator";

    /// <summary>Created by <see cref="BalancerReplicatorProvider"/>; use <see cref="Get"/>.</summary>
    public BalancerReplicator(ExtendedActorSystem system)
    {
        // Distributed Data's own reference.conf carries its defaults and its serializer bindings.
        system.Settings.InjectTopLevelFallback(DistributedData.DefaultConfig());
        system.Settings.InjectTopLevelFallback(BalancerSettings.DefaultConfig());
        var config = system.Settings.Config;
        var role = config.GetString("balancer.node.role", "");
        var address = system.Provider.DefaultAddress;
        // A node configured with port 0 gets a new address each start: nothing it wrote could be found again.
        var durableDirectory = DurableDirectory(config, address.Host ?? "", config.GetInt("akka.remote.dot-netty.tcp.port", 0) == 0 ? 0 : address.Port ?? 0);
        var replicatorConfig = config.GetConfig("balancer.replication").WithFallback(config.GetConfig("akka.cluster.distributed-data"));
        var frameBytes = FrameBytes(config);
        if (replicatorConfig.GetString("max-delta-elements", "auto") == "auto")
        {
            var largestBucket = Configuration.AffinitySettings.MaxSessionsPerBucket * Serialization.AffinityBucketFormat.EntryBytes + 1024;
            var fitting = Math.Clamp(frameBytes / 2 / largestBucket, 1, 32);
            replicatorConfig = ConfigurationFactory.ParseString($"max-delta-elements = {fitting}").WithFallback(replicatorConfig);
        }
        if (durableDirectory is not null)
        {
            replicatorConfig = ConfigurationFactory.ParseString($"durable.lmdb.dir = \"{durableDirectory.Replace("\\", "/")}\"").WithFallback(replicatorConfig);
        }
        var replicatorSettings = ReplicatorSettings.Create(replicatorConfig).WithRole(role.Length == 0 ? null : role);
        if (durableDirectory is null)
        {
            replicatorSettings = replicatorSettings.WithDurableKeys(ImmutableHashSet<string>.Empty);
        }
        var log = Logging.GetLogger(system, typeof(BalancerReplicator));
        log.Info("replication: {0}, role [{1}], at most {2} keys per gossip message within the {3}-byte remoting frame",
            durableDirectory is null ? "runtime changes not durable (balancer.node.data-dir is empty)" : $"runtime changes durable in {durableDirectory}",
            role, replicatorSettings.MaxDeltaElements, frameBytes);
        Replicator = system.SystemActorOf(ReplicatorProps(replicatorSettings), Name);
        system.SystemActorOf(ReplicatorWatch.Props(Replicator, this), Name + "-watch");
    }

    private volatile ReplicationTrouble? _trouble;

    /// <summary>Why the replicator does not work (it stopped, or has not answered for seconds) and since when; null while it works.</summary>
    public ReplicationTrouble? Trouble
    {
        get => _trouble;
        internal set => _trouble = value;
    }

    /// <summary>What is wrong with replication, and since when.</summary>
    public sealed record ReplicationTrouble(string Reason, DateTimeOffset Since);

    /// <summary>
    /// Akka.NET keeps the replicator's class internal (a system gets one through the
    /// <see cref="DistributedData"/> extension, and Cluster.Sharding makes its own from inside);
    /// the Props are built as its own <c>Replicator.Props</c> builds them.
    /// </summary>
    private static Props ReplicatorProps(ReplicatorSettings settings)
    {
        var type = typeof(DistributedData).Assembly.GetType("Akka.DistributedData.Replicator", throwOnError: true)!;
        return Props.Create(type, settings).WithDeploy(Deploy.Local).WithDispatcher(settings.Dispatcher);
    }

    /// <summary>The extension of <paramref name="system"/>, started on first use.</summary>
    public static BalancerReplicator Get(ActorSystem system) => system.WithExtension<BalancerReplicator, BalancerReplicatorProvider>();

    /// <summary>The replicator: send it Distributed Data's Get, Update, Subscribe and Delete.</summary>
    public IActorRef Replicator { get; }

    /// <summary>
    /// The largest message remoting carries (<c>akka.remote.dot-netty.tcp.maximum-frame-size</c>,
    /// the host's or Akka's default of 128,000 bytes): what replicated values and deltas are sized to.
    /// </summary>
    public static long FrameBytes(Config config) =>
        config.GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size", 128000) ?? 128000;

    /// <summary>
    /// Where a node listening on <paramref name="host"/>:<paramref name="port"/> keeps its durable
    /// state: <c>balancer.replication.durable.lmdb.dir</c> when set, otherwise its own folder under
    /// <c>balancer.node.data-dir</c> named after its address, so several nodes of one host never
    /// share a LightningDB environment. Null when nothing is durable: <c>data-dir</c> empty, or port 0
    /// (a new address each start, so nothing written could be found again).
    /// </summary>
    public static string? DurableDirectory(Config config, string host, int port)
    {
        config = config.WithFallback(BalancerSettings.DefaultConfig());
        if (config.GetString("balancer.replication.durable.lmdb.dir", "") is { Length: > 0 } chosen)
        {
            return Path.GetFullPath(chosen);
        }
        var dataDir = config.GetString("balancer.node.data-dir", "");
        return dataDir.Length == 0 || port == 0 ? null : Path.GetFullPath(Path.Combine(dataDir, $"ddata-{host}-{port}"));
    }
}

/// <summary>The <see cref="ExtensionIdProvider{T}"/> of <see cref="BalancerReplicator"/>.</summary>
public sealed class BalancerReplicatorProvider : ExtensionIdProvider<BalancerReplicator>
{
    /// <inheritdoc />
    public override BalancerReplicator CreateExtension(ExtendedActorSystem system) => new(system);
}
