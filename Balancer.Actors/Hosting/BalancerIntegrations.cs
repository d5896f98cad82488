using System.Text;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Balancer.Client;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Balancer.Hosting;

/// <summary>
/// What an ASP.NET Core app wires besides the ActorSystem: a readiness check, named HttpClients
/// that call a pool, and Balancer's settings from <see cref="IConfiguration"/> (appsettings.json,
/// environment variables) under the same names as in HOCON.
/// <code>
/// services.AddAkka("orders", (builder, provider) => builder.WithBalancer(configuration.GetSection("balancer")));
/// services.AddHealthChecks().AddBalancer();
/// services.AddHttpClient("inventory").AddBalancer();   // http://inventory/... → a live backend of pool inventory
/// </code>
/// </summary>
public static class BalancerIntegrations
{
    /// <summary>
    /// Readiness: healthy once this member is Up and every pool's routing actor has loaded its
    /// replicated state; degraded while a pool is in panic or has no backend to route to; unhealthy before.
    /// </summary>
    public static IHealthChecksBuilder AddBalancer(this IHealthChecksBuilder builder, string name = "balancer", params string[] tags) =>
        builder.Add(new HealthCheckRegistration(name, provider => new BalancerHealthCheck(provider.GetRequiredService<ActorSystem>()), HealthStatus.Unhealthy, tags));

    /// <summary>
    /// The named client calls <paramref name="pool"/> (default: the client's name) through
    /// <see cref="BalancerHttpHandler"/>: a live backend per request, a refused connection retried on
    /// another, outcomes fed to passive health. Its base address is <c>http://POOL/</c> unless set.
    /// </summary>
    public static IHttpClientBuilder AddBalancer(this IHttpClientBuilder builder, string? pool = null)
    {
        var target = pool ?? builder.Name;
        builder.ConfigureHttpClient(client => client.BaseAddress ??= new Uri($"http://{target}/"));
        return builder.AddHttpMessageHandler(provider => new BalancerHttpHandler(BalancerExtension.Get(provider.GetRequiredService<ActorSystem>()).Client, target));
    }

    /// <summary>
    /// Balancer's settings from a configuration section that mirrors <c>balancer { }</c> key for
    /// key (<c>pools:inventory:health-check:interval = 2s</c>, <c>pools:inventory:backends:a =
    /// 10.0.0.5:8080</c>); a list is an array section. Every setting of reference.conf is reachable,
    /// and the same validation applies when the system starts.
    /// </summary>
    public static Config ToBalancerConfig(this IConfiguration section)
    {
        var text = new StringBuilder("balancer ");
        AppendObject(section, text);
        return ConfigurationFactory.ParseString(text.ToString());
    }

    private static void AppendObject(IConfiguration section, StringBuilder text)
    {
        text.Append("{\n");
        foreach (var child in section.GetChildren())
        {
            text.Append(Quote(child.Key)).Append(" = ");
            AppendValue(child, text);
            text.Append('\n');
        }
        text.Append('}');
    }

    private static void AppendValue(IConfigurationSection section, StringBuilder text)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
        {
            text.Append(Quote(section.Value ?? ""));
        }
        else if (children.All(c => int.TryParse(c.Key, out _)))
        {
            // IConfiguration spells a list as sections named 0, 1, 2...
            text.Append('[');
            foreach (var item in children.OrderBy(c => int.Parse(c.Key)))
            {
                AppendValue(item, text);
                text.Append(", ");
            }
            text.Append(']');
        }
        else
        {
            AppendObject(section, text);
        }
    }

    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}

/// <summary>The readiness check <see cref="BalancerIntegrations.AddBalancer(IHealthChecksBuilder, string, string[])"/> registers.</summary>
public sealed class BalancerHealthCheck(ActorSystem system) : IHealthCheck
{
    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var balancer = BalancerExtension.Get(system);
        var status = Cluster.Get(system).SelfMember.Status;
        if (status != MemberStatus.Up)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"this member is {status.ToString().ToLowerInvariant()}, not up"));
        }
        var pools = balancer.Pools.Pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        var loading = pools.Where(p => !p.Started.IsCompletedSuccessfully || p.Snapshot.Version == 0).Select(p => p.Name).ToList();
        if (loading.Count > 0)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"pools not loaded yet: {string.Join(", ", loading)}"));
        }
        // A pool in panic routes to backends its checks call down: serving, but not healthy.
        var failing = pools.Where(p => p.Snapshot.Routable.Length == 0 || p.Snapshot.Panic).Select(p => p.Name).ToList();
        var data = pools.ToDictionary(p => p.Name, p => (object)$"{p.Snapshot.Backends.Count(b => b.Healthy)}/{p.Snapshot.Backends.Length} healthy{(p.Snapshot.Panic ? ", panic" : "")}");
        return Task.FromResult(failing.Count > 0
            ? HealthCheckResult.Degraded($"too few healthy backends (panic, or none to route to) in: {string.Join(", ", failing)}", data: data)
            : HealthCheckResult.Healthy($"{pools.Count} pool(s) routing", data));
    }
}
