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
            var settings = BalancerExtension.Get(admin.System).Settings;
            return Results.Json(new ConfigView(
                SettingsComparer.Fingerprint(settings.Pools),
                [.. settings.Pools.Select(p => p.Name).Order(StringComparer.Ordinal)],
                [.. settings.Frontends.Select(f => f.Name).Order(StringComparer.Ordinal)]), Json);
        });
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

/// <summary>The configuration a node runs.</summary>
/// <param name="Fingerprint">A digest of its pools' settings: equal on nodes that run the same pools.</param>
/// <param name="Pools">Its pools.</param>
/// <param name="Frontends">Its frontends.</param>
internal sealed record ConfigView(string Fingerprint, IReadOnlyList<string> Pools, IReadOnlyList<string> Frontends);

/// <summary>A reload's outcome: a line per change.</summary>
internal sealed record ReloadResult(string Result, IReadOnlyList<string> Changes);
