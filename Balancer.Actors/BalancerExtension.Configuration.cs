using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Frontends;

namespace Balancer;

/// <summary>The configuration lifecycle: reload, apply, publish to the cluster.</summary>
public sealed partial class BalancerExtension
{
    private readonly SemaphoreSlim _applying = new(1, 1);
    private Func<ConfigurationReading>? _readConfiguration;

    /// <summary>The cluster's configuration and what each member runs, as this node knows them.</summary>
    public ConfigurationStatus ConfigurationStatus { get; } = new();

    /// <summary>Whether this node reaches etcd (<c>balancer.config-source.etcd</c>; always reachable without it).</summary>
    public EtcdStatus EtcdStatus { get; } = new();

    /// <summary>
    /// How this node reads its own configuration again (<c>balancer run</c>: its files and
    /// <c>--set</c>s), for <see cref="ReloadAsync"/> and for laying the cluster's configuration over
    /// it; without it, the ActorSystem's configuration is read.
    /// </summary>
    public void ReadConfigurationWith(Func<ConfigurationReading> read) => _readConfiguration = read;

    /// <summary>
    /// Reads the node's configuration again, with the cluster's configuration it applied over it, and applies it
    /// (<see cref="ApplyAsync"/>); SIGHUP, a change of a configuration file and <c>ctl config reload</c> come here.
    /// </summary>
    /// <exception cref="BalancerConfigException">Refused (every problem listed); the running configuration stays.</exception>
    public Task<ConfigurationChange> ReloadAsync(string source) => ApplyComposedAsync(null, source);

    /// <summary>Applies <paramref name="cluster"/> over the node's own configuration (the cluster published a new version).</summary>
    internal Task<ConfigurationChange> ApplyClusterAsync(ClusterConfiguration cluster) =>
        ApplyComposedAsync(cluster, cluster.PublishedBy.StartsWith("etcd ", StringComparison.Ordinal) ? $"{cluster.PublishedBy} revision {cluster.Version}" : $"cluster version {cluster.Version}");

    /// <summary>
    /// Reads the node's files and lays <paramref name="cluster"/> (null: the version it runs) over
    /// them, under the lock that orders every apply, so that a reload never undoes a version
    /// applied meanwhile.
    /// </summary>
    private async Task<ConfigurationChange> ApplyComposedAsync(ClusterConfiguration? cluster, string source)
    {
        await _applying.WaitAsync();
        try
        {
            var over = cluster ?? DataPlane.AppliedClusterConfiguration;
            var (next, problems) = Compose(over?.Text);
            if (next is null)
            {
                Refused(source, problems);
                throw new BalancerConfigException(problems.Select(ConfigProblem.Parse).ToList());
            }
            var change = await ApplyLockedAsync(next, source);
            if (cluster is not null)
            {
                DataPlane.AppliedClusterConfiguration = cluster;
            }
            return change;
        }
        finally
        {
            _applying.Release();
        }
    }

    /// <summary>The node's own configuration with <paramref name="clusterText"/> laid over it, read and validated; or the problems.</summary>
    private (BalancerSettings? Settings, IReadOnlyList<string> Problems) Compose(string? clusterText)
    {
        var own = _readConfiguration?.Invoke() ?? new ConfigurationReading(_system.Settings.Config, []);
        if (own.Config is null || own.Problems.Count > 0)
        {
            return (null, own.Problems);
        }
        var config = own.Config;
        if (!string.IsNullOrWhiteSpace(clusterText))
        {
            var (cluster, problems) = ParseClusterText(clusterText);
            if (cluster is null)
            {
                return (null, problems);
            }
            config = cluster.WithFallback(config);
        }
        return BalancerSettings.TryCreate(config, out var settings, out var found)
            ? (settings, [])
            : (null, found.Select(p => p.ToString()).ToList());
    }

    /// <summary>A cluster configuration's HOCON, or why it cannot be one (a parse error, a key that stays with each node, too long).</summary>
    internal static (Config? Config, IReadOnlyList<string> Problems) ParseClusterText(string text)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(text) > ClusterConfiguration.MaxTextBytes)
        {
            return (null, [$"the cluster configuration is {System.Text.Encoding.UTF8.GetByteCount(text)} bytes; at most {ClusterConfiguration.MaxTextBytes} are replicated"]);
        }
        Config config;
        try
        {
            config = ConfigurationFactory.ParseString(text);
        }
        catch (Exception e)
        {
            return (null, [$"the cluster configuration is not HOCON: {e.Message.Split('\n')[0].Trim()}"]);
        }
        var problems = new List<string>();
        if (config.Root.IsObject())
        {
            foreach (var (key, value) in config.Root.GetObject().Items)
            {
                if (key != "balancer")
                {
                    problems.Add($"{key}: stays with each node; a cluster configuration sets only balancer.{{{string.Join(", ", ClusterConfiguration.ClusterWideKeys.Order())}}}");
                    continue;
                }
                if (!value.IsObject())
                {
                    problems.Add("balancer: expected an object");
                    continue;
                }
                foreach (var inner in value.GetObject().Items.Keys.Where(k => !ClusterConfiguration.ClusterWideKeys.Contains(k)))
                {
                    problems.Add($"balancer.{inner}: stays with each node (set it in the node's own file); a cluster configuration sets only balancer.{{{string.Join(", ", ClusterConfiguration.ClusterWideKeys.Order())}}}");
                }
            }
        }
        return problems.Count > 0 ? (null, problems) : (config, []);
    }

    /// <summary>
    /// Publishes <paramref name="text"/> as the cluster's configuration: checked here first, over this
    /// node's own configuration (refused whole, a line per problem), then replicated to every node,
    /// each of which lays it over its own files and applies it. Answered once a majority holds it.
    /// </summary>
    /// <exception cref="BalancerConfigException">Refused; nothing was published.</exception>
    public async Task<(long Version, IReadOnlyList<string> Changes)> PublishAsync(string text)
    {
        var (next, problems) = Compose(text);
        if (next is not null)
        {
            problems = BindProblems(Settings, next).Select(p => p.ToString()).ToList();
        }
        if (next is null || problems.Count > 0)
        {
            throw new BalancerConfigException(problems.Select(ConfigProblem.Parse).ToList());
        }
        var changes = ConfigurationChange.Between(Settings, next).Describe();
        if (Settings.Etcd is { } etcd)
        {
            // etcd is where the cluster's configuration lives: every node applies it from there.
            using var connection = EtcdConnection.For(etcd);
            try
            {
                return (await connection.PutAsync(etcd.ConfigKey, text), changes);
            }
            catch (Grpc.Core.RpcException e)
            {
                throw new InvalidOperationException($"etcd {connection.Endpoint} did not take {etcd.ConfigKey}: {e.Status.Detail}");
            }
        }
        var published = await Guardian.Ask<ClusterConfigurationKeeper.Published>(
            new ClusterConfigurationKeeper.Publish(text, SettingsComparer.Fingerprint(next.Pools), changes),
            Settings.Node.WriteTimeout + TimeSpan.FromSeconds(3));
        return (published.Version, published.Confirmed ? changes : [.. changes, "(not yet confirmed by a majority of nodes: it spreads as they are reachable)"]);
    }

    /// <summary>
    /// Applies <paramref name="next"/> in place of the running configuration, or refuses it whole.
    /// Pools are rebuilt with a snapshot swap; frontends are added, removed, or opened again only
    /// when their listeners change (any other change applies to their next request or connection);
    /// probes start again only for backends whose check changed. Requests and connections in flight
    /// are never cut. Refused, with one line per problem, when an address a new frontend needs
    /// cannot be bound; <paramref name="source"/> names what asked (for the log and the event feed).
    /// </summary>
    /// <exception cref="BalancerConfigException">The configuration was refused; the running one stays.</exception>
    public async Task<ConfigurationChange> ApplyAsync(BalancerSettings next, string source)
    {
        await _applying.WaitAsync();
        try
        {
            return await ApplyLockedAsync(next, source);
        }
        finally
        {
            _applying.Release();
        }
    }

    private async Task<ConfigurationChange> ApplyLockedAsync(BalancerSettings next, string source)
    {
        var problems = BindProblems(Settings, next);
        if (problems.Count > 0)
        {
            Refused(source, problems.Select(p => p.ToString()).ToList());
            throw new BalancerConfigException(problems);
        }
        ConfigurationChange change;
        try
        {
            change = await Guardian.Ask<ConfigurationChange>(new BalancerGuardian.ApplyConfiguration(next, source), TimeSpan.FromSeconds(10));
        }
        catch (InvalidOperationException e)
        {
            // Nothing was changed (a certificate file that could not be read again, say).
            Refused(source, [e.Message]);
            throw new BalancerConfigException([new ConfigProblem("configuration", e.Message)]);
        }
        var log = Logging.GetLogger(_system, "balancer.config");
        foreach (var line in change.Describe())
        {
            log.Info("configuration ({0}): {1}", source, line);
        }
        if (change.IsEmpty && change.NeedRestart.IsEmpty)
        {
            log.Info("configuration ({0}): nothing changed", source);
        }
        return change;
    }

    /// <summary>The addresses <paramref name="next"/> would bind anew that cannot be bound, one problem each.</summary>
    private static List<ConfigProblem> BindProblems(BalancerSettings running, BalancerSettings next)
    {
        var problems = new List<ConfigProblem>();
        if (!next.Node.StartFrontends || next.Node.Mode != NodeMode.ActiveActive)
        {
            return problems;
        }
        var change = ConfigurationChange.Between(running, next);
        foreach (var frontend in change.FrontendsAdded.Concat(change.FrontendsChanged.Where(c => !c.InPlace).Select(c => c.Settings)))
        {
            foreach (var address in frontend.Bind)
            {
                // Addresses this node holds now are handed over, not bound anew.
                if (running.Frontends.Any(f => f.Bind.Contains(address)))
                {
                    continue;
                }
                var key = $"balancer.frontends.{frontend.Name}.bind";
                if (ListenerCheck.Problem(key, ListenSockets.Resolve(address), frontend.ReusePort) is { } problem)
                {
                    problems.Add(new ConfigProblem(key, problem[(key.Length + 2)..]));
                }
            }
        }
        return problems;
    }

    /// <summary>Says that a configuration from <paramref name="source"/> was refused (the log, the event feed, alerts).</summary>
    public void Refused(string source, IReadOnlyList<string> problems)
    {
        var log = Logging.GetLogger(_system, "balancer.config");
        foreach (var problem in problems)
        {
            log.Error("configuration ({0}) refused: {1}", source, problem);
        }
        log.Error("configuration ({0}) refused: {1} problem(s); the running configuration stays", source, problems.Count);
        _system.EventStream.Publish(new ConfigurationRefused(source, problems));
    }
}

/// <summary>A node's own configuration read again, or every problem that kept it from being read (one line each).</summary>
public sealed record ConfigurationReading(Config? Config, IReadOnlyList<string> Problems);
