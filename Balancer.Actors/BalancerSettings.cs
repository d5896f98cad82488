using System.Collections.Immutable;
using System.Reflection;
using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Routing.LoadBalancing;

namespace Balancer;

/// <summary>
/// The typed form of the <c>balancer { }</c> configuration section. <see cref="Create(Config)"/>
/// validates the whole section and reports every problem at once.
/// </summary>
public sealed record BalancerSettings(
    NodeSettings Node,
    ImmutableArray<FrontendSettings> Frontends,
    ImmutableArray<PoolSettings> Pools,
    AlertSettings Alerts,
    TelemetrySettings Telemetry,
    EtcdSettings? Etcd = null)
{
    private static readonly Lazy<Config> Reference = new(LoadReference);

    /// <summary>The embedded reference.conf: every key with its default.</summary>
    public static Config DefaultConfig() => Reference.Value;

    /// <summary>Reads and validates <c>balancer { }</c> from <paramref name="config"/> (reference.conf is the fallback).</summary>
    /// <exception cref="BalancerConfigException">The section has one or more problems.</exception>
    public static BalancerSettings Create(Config config)
    {
        if (!TryCreate(config, out var settings, out var problems))
        {
            throw new BalancerConfigException(problems);
        }
        return settings;
    }

    /// <summary>Reads and validates <c>balancer { }</c>; returns false with every problem found.</summary>
    public static bool TryCreate(Config config, out BalancerSettings settings, out IReadOnlyList<ConfigProblem> problems)
    {
        var found = new List<ConfigProblem>();
        settings = Read(config, found);
        problems = found;
        return found.Count == 0;
    }

    /// <summary>The pool named <paramref name="name"/>, or null.</summary>
    public PoolSettings? FindPool(string name)
    {
        foreach (var pool in Pools)
        {
            if (pool.Name == name)
            {
                return pool;
            }
        }
        return null;
    }

    private static Config LoadReference() => ConfigurationFactory.ParseString(EmbeddedFile.Read("Balancer.reference.conf"));

    private static BalancerSettings Read(Config config, List<ConfigProblem> problems)
    {
        var userBalancer = config.HasPath("balancer") ? config.GetConfig("balancer") : Config.Empty;
        var reference = DefaultConfig().GetConfig("balancer");
        var root = new SettingsReader(userBalancer, reference, "balancer", problems);
        root.RejectUnknownKeys(SettingsReader.KeysOf(reference), userBalancer);

        var node = NodeSettingsReader.ReadNode(root.Section("node"), userBalancer, reference);

        var frontendDefaults = root.Raw.GetConfig("frontend-defaults");
        var poolDefaults = root.Raw.GetConfig("pool-defaults");
        var backendDefaults = root.Raw.GetConfig("backend-defaults");
        var defaultWeight = root.Section("backend-defaults").Int("weight", BackendRules.MinWeight, BackendRules.MaxWeight);

        var pools = ImmutableArray.CreateBuilder<PoolSettings>();
        foreach (var name in root.ObjectKeys("pools"))
        {
            if (root.Section("pools").IsRemoved(name))
            {
                // NAME = null removes a pool an included file (or the cluster's configuration) defined.
                continue;
            }
            var section = root.Section("pools").Section(name, poolDefaults);
            SettingsReader.CheckName(root.Section("pools"), name, "pool");
            var userSection = userBalancer.GetConfig("pools." + name) ?? Config.Empty;
            pools.Add(PoolSettingsReader.ReadPool(name, section, userSection, poolDefaults, backendDefaults, defaultWeight));
        }

        var frontends = ImmutableArray.CreateBuilder<FrontendSettings>();
        foreach (var name in root.ObjectKeys("frontends"))
        {
            if (root.Section("frontends").IsRemoved(name))
            {
                continue;
            }
            var section = root.Section("frontends").Section(name, frontendDefaults);
            SettingsReader.CheckName(root.Section("frontends"), name, "frontend");
            var userSection = userBalancer.GetConfig("frontends." + name) ?? Config.Empty;
            section.RejectUnknownKeys(SettingsReader.KeysOf(frontendDefaults), userSection);
            frontends.Add(FrontendSettingsReader.ReadFrontend(name, section, pools, root.Raw.GetConfig("route-defaults")));
        }

        if (node.AffinityKey.Length is > 0 and < 16 && pools.Any(p => p.Affinity.Mode != AffinityMode.None))
        {
            problems.Add(new ConfigProblem("balancer.node.affinity-key",
                "affinity needs a secret of at least 16 characters, the same on every node (or leave it empty: the cluster generates one)"));
        }
        var settings = new BalancerSettings(node, frontends.ToImmutable(), pools.ToImmutable(), AlertSettingsReader.ReadAlerts(root.Section("alerts"), userBalancer, reference),
            TelemetrySettingsReader.ReadTelemetry(root.Section("telemetry"), userBalancer, reference),
            ConfigSourceSettingsReader.ReadEtcd(root.Section("config-source"), userBalancer, reference));
        FrontendSettingsReader.CheckBindConflicts(settings, problems);
        return settings;
    }

    /// <summary>The version string of this assembly, for logs and the CLI.</summary>
    public static string Version =>
        typeof(BalancerSettings).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
}
