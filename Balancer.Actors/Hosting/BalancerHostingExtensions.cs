using Akka.Configuration;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Balancer.Hosting;

/// <summary>
/// Akka.Hosting integration: <c>builder.WithBalancer(...)</c> adds Balancer's configuration to the
/// ActorSystem being built and starts it with the system, registering its root actor in the
/// <see cref="ActorRegistry"/> under <see cref="BalancerExtension"/>.
/// <code>
/// services.AddAkka("orders", builder => builder
///     .WithClustering(...)
///     .WithBalancer(new BalancerOptions { Pools = { ["inventory"] = new BalancerPoolOptions { Backends = { ["a"] = "10.0.0.5:8080" } } } }));
/// services.AddBalancerClient();   // IBalancerClient for constructors
/// </code>
/// </summary>
public static class BalancerHostingExtensions
{
    /// <summary>
    /// Balancer with settings from <paramref name="options"/>. Every overload also adds
    /// <see cref="ClusterTuning"/> below the host's own settings unless <c>clusterTuning</c> is false,
    /// which leaves Akka's defaults.
    /// </summary>
    public static AkkaConfigurationBuilder WithBalancer(this AkkaConfigurationBuilder builder, BalancerOptions options, bool clusterTuning = true) =>
        builder.WithBalancer(options.ToConfig(), clusterTuning);

    /// <summary>Balancer with settings from a configuration section that mirrors <c>balancer { }</c> (see <see cref="BalancerIntegrations.ToBalancerConfig"/>).</summary>
    public static AkkaConfigurationBuilder WithBalancer(this AkkaConfigurationBuilder builder, Microsoft.Extensions.Configuration.IConfiguration section, bool clusterTuning = true) =>
        builder.WithBalancer(section.ToBalancerConfig(), clusterTuning);

    /// <summary>Balancer with a <c>balancer { }</c> HOCON section.</summary>
    public static AkkaConfigurationBuilder WithBalancer(this AkkaConfigurationBuilder builder, string hocon, bool clusterTuning = true) =>
        builder.WithBalancer(ConfigurationFactory.ParseString(hocon), clusterTuning);

    /// <summary>Balancer with a <c>balancer { }</c> configuration; it is validated when the system starts.</summary>
    public static AkkaConfigurationBuilder WithBalancer(this AkkaConfigurationBuilder builder, Config config, bool clusterTuning = true)
    {
        builder.AddHocon(config, HoconAddMode.Prepend);
        if (clusterTuning)
        {
            // Appended: whatever the host sets itself (WithClustering, WithRemoting, its own HOCON) wins.
            builder.AddHocon(ClusterTuning.Config, HoconAddMode.Append);
        }
        return builder.WithActors((system, registry) =>
        {
            var balancer = BalancerExtension.Get(system);
            registry.Register<BalancerExtension>(balancer.Guardian);
        });
    }

    /// <summary>Registers the node's <see cref="Client.IBalancerClient"/> (needs the ActorSystem from AddAkka).</summary>
    public static IServiceCollection AddBalancerClient(this IServiceCollection services) =>
        services.AddSingleton(provider => BalancerExtension.Get(provider.GetRequiredService<Akka.Actor.ActorSystem>()).Client);
}

/// <summary>The common settings of an embedded Balancer, turned into <c>balancer { }</c> HOCON.</summary>
public sealed class BalancerOptions
{
    /// <summary>active-active (default) or active-passive.</summary>
    public Configuration.NodeMode? Mode { get; set; }

    /// <summary>Only members with this Akka.Cluster role run Balancer.</summary>
    public string? Role { get; set; }

    /// <summary>Open the configured frontends (off: client-side balancing only).</summary>
    public bool? StartFrontends { get; set; }

    /// <summary>Where to serve the admin API (null: off).</summary>
    public string? AdminBind { get; set; }

    /// <summary>The HMAC key of cookie affinity (16 characters or more, the same on every node).</summary>
    public string? AffinityKey { get; set; }

    /// <summary>Pools by name.</summary>
    public Dictionary<string, BalancerPoolOptions> Pools { get; } = new(StringComparer.Ordinal);

    /// <summary>More <c>balancer { }</c> HOCON, for keys without a property here; it wins over the properties.</summary>
    public string? Hocon { get; set; }

    /// <summary>The options as configuration.</summary>
    public Config ToConfig()
    {
        var text = new System.Text.StringBuilder("balancer {\n");
        if (Mode is { } mode)
        {
            text.Append("  node.mode = ").Append(mode == Configuration.NodeMode.ActivePassive ? "active-passive" : "active-active").Append('\n');
        }
        if (Role is not null)
        {
            text.Append("  node.role = ").Append(Quote(Role)).Append('\n');
        }
        if (StartFrontends is { } start)
        {
            text.Append("  node.start-frontends = ").Append(start ? "on" : "off").Append('\n');
        }
        if (AdminBind is not null)
        {
            text.Append("  node.admin { enabled = on, bind = ").Append(Quote(AdminBind)).Append(" }\n");
        }
        if (AffinityKey is not null)
        {
            text.Append("  node.affinity-key = ").Append(Quote(AffinityKey)).Append('\n');
        }
        foreach (var (name, pool) in Pools)
        {
            text.Append("  pools.").Append(Quote(name)).Append(" {\n");
            if (pool.Algorithm is not null)
            {
                text.Append("    algorithm = ").Append(Quote(pool.Algorithm)).Append('\n');
            }
            if (pool.Affinity is not null)
            {
                text.Append("    affinity.mode = ").Append(Quote(pool.Affinity)).Append('\n');
            }
            if (pool.HealthCheckPath is not null)
            {
                text.Append("    health-check.path = ").Append(Quote(pool.HealthCheckPath)).Append('\n');
            }
            text.Append("    backends {\n");
            foreach (var (backend, address) in pool.Backends)
            {
                text.Append("      ").Append(Quote(backend)).Append(" = ").Append(Quote(address)).Append('\n');
            }
            text.Append("    }\n  }\n");
        }
        text.Append("}\n");
        var config = ConfigurationFactory.ParseString(text.ToString());
        return Hocon is null ? config : ConfigurationFactory.ParseString(Hocon).WithFallback(config);
    }

    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}

/// <summary>One pool of <see cref="BalancerOptions"/>.</summary>
public sealed class BalancerPoolOptions
{
    /// <summary>round-robin (default), weighted-round-robin, least-connections, power-of-two, consistent-hash, maglev, random or first.</summary>
    public string? Algorithm { get; set; }

    /// <summary>none (default), cookie, learn-cookie:NAME, header:NAME or source-ip.</summary>
    public string? Affinity { get; set; }

    /// <summary>The HTTP health-check path (default /healthz).</summary>
    public string? HealthCheckPath { get; set; }

    /// <summary>Backend name → "HOST:PORT".</summary>
    public Dictionary<string, string> Backends { get; } = new(StringComparer.Ordinal);
}
