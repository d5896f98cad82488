using Balancer.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>The running configuration (<c>ctl config show</c>) and reloading it (<c>ctl config reload</c>).</summary>
internal static class ConfigEndpoints
{
    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/config", () =>
        {
            var balancer = BalancerExtension.Get(admin.System);
            var settings = balancer.Settings;
            var status = balancer.ConfigurationStatus.Current;
            var members = admin.Membership.Current().Members;
            return Results.Json(new ConfigView(
                SettingsComparer.Fingerprint(settings.Pools),
                status.AppliedVersion,
                [.. settings.Pools.Select(p => p.Name).Order(StringComparer.Ordinal)],
                [.. settings.Frontends.Select(f => f.Name).Order(StringComparer.Ordinal)],
                status.Cluster is { } cluster ? new ClusterConfigView(cluster.Version, cluster.PublishedBy, cluster.PublishedAt, cluster.Fingerprint, cluster.Text) : null,
                [.. members.Select(m => new NodeConfigView(m.Address, m.Config?.Version, m.Config?.Fingerprint, m.ConfigDrift))]), Json);
        });
        routes.MapGet("/api/config/history", () =>
            Results.Json(BalancerExtension.Get(admin.System).ConfigurationStatus.Current.Cluster?.Versions.ToList() ?? [], Json));
        routes.MapPost("/api/config", async (HttpContext context) =>
        {
            var (request, problem) = await ReadBodyAsync<PublishRequest>(context);
            if (problem is not null)
            {
                return problem;
            }
            try
            {
                var (version, changes) = await BalancerExtension.Get(admin.System).PublishAsync(request!.Text ?? "");
                return Results.Json(new ReloadResult($"cluster configuration version {version} published", changes), Json);
            }
            catch (BalancerConfigException e)
            {
                return Problem(StatusCodes.Status400BadRequest, "configuration refused",
                    $"{e.Problems.Count} problem(s); nothing was published:\n" + string.Join("\n", e.Problems));
            }
            catch (Exception e) when (e is InvalidOperationException or Akka.Actor.AskTimeoutException)
            {
                return Problem(StatusCodes.Status503ServiceUnavailable, "not published", e.Message);
            }
        }).RequireToken();
        routes.MapPost("/api/config/reload", async () =>
        {
            try
            {
                var change = await BalancerExtension.Get(admin.System).ReloadAsync("ctl config reload");
                var lines = change.Describe();
                return Results.Json(new ReloadResult(lines.Count == 0 ? "configuration reloaded: nothing changed" : "configuration reloaded", lines), Json);
            }
            catch (BalancerConfigException e)
            {
                return Problem(StatusCodes.Status400BadRequest, "configuration refused",
                    $"{e.Problems.Count} problem(s); the running configuration stays:\n" + string.Join("\n", e.Problems));
            }
            catch (InvalidOperationException e)
            {
                return Problem(StatusCodes.Status409Conflict, "cannot reload", e.Message);
            }
        }).RequireToken();
    }
}

/// <summary>The configuration a node runs, and the cluster's.</summary>
/// <param name="Fingerprint">A digest of its pools' settings: equal on nodes that run the same pools.</param>
/// <param name="Version">The cluster configuration version it applied (0: its files alone).</param>
/// <param name="Pools">Its pools.</param>
/// <param name="Frontends">Its frontends.</param>
/// <param name="Cluster">The newest published cluster configuration, or null.</param>
/// <param name="Nodes">What each member runs.</param>
internal sealed record ConfigView(string Fingerprint, long Version, IReadOnlyList<string> Pools, IReadOnlyList<string> Frontends, ClusterConfigView? Cluster, IReadOnlyList<NodeConfigView> Nodes);

/// <summary>The newest published cluster configuration.</summary>
internal sealed record ClusterConfigView(long Version, string PublishedBy, DateTimeOffset PublishedAt, string Fingerprint, string Text);

/// <summary>What one member runs (null until it has said), and whether it drifts from the others.</summary>
internal sealed record NodeConfigView(string Node, long? Version, string? Fingerprint, bool Drift);

/// <summary>The body of <c>POST /api/config</c>: the HOCON to publish.</summary>
internal sealed record PublishRequest(string? Text);

/// <summary>A reload's outcome: a line per change.</summary>
internal sealed record ReloadResult(string Result, IReadOnlyList<string> Changes);
