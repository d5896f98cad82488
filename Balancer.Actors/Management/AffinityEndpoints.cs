using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>The admin API's session routes: list, show and clear a pool's sessions. Every one needs the token, reads included: session keys are secrets.</summary>
internal static class AffinityEndpoints
{
    private const int MaxShownAffinityEntries = 10_000;

    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/pools/{pool}/affinity", (string pool, int? limit) => WithAffinity(admin, pool, table =>
        {
            var entries = table.Snapshot();
            var shown = entries.OrderBy(e => e.Key, StringComparer.Ordinal).Take(Math.Clamp(limit ?? 100, 0, MaxShownAffinityEntries))
                .Select(e => AdminText.View(e.Key, e.Value)).ToList();
            var settings = table.Settings;
            return Results.Json(new AffinityView(pool, AdminText.Affinity(settings), settings.Write.ToString().ToLowerInvariant(), entries.Count, shown), Json);
        })).RequireToken();
        routes.MapGet("/api/pools/{pool}/affinity/{key}", (string pool, string key) => WithAffinity(admin, pool, table =>
            table.Lookup(key) is { } entry
                ? Results.Json(AdminText.View(key, entry), Json)
                : Problem(StatusCodes.Status404NotFound, "no such session", $"pool {pool} has no live affinity entry for that key"))).RequireToken();
        routes.MapDelete("/api/pools/{pool}/affinity", (string pool) => ClearAffinityAsync(admin, pool, null)).RequireToken();
        routes.MapDelete("/api/pools/{pool}/affinity/{key}", (string pool, string key) => ClearAffinityAsync(admin, pool, key)).RequireToken();
    }

    private static async Task<IResult> ClearAffinityAsync(AdminContext admin, string pool, string? key)
    {
        var (table, problem) = FindAffinity(admin, pool);
        if (table is null)
        {
            return problem!;
        }
        try
        {
            var cleared = await table.Clear(key).WaitAsync(admin.Node.WriteTimeout + TimeSpan.FromSeconds(2));
            if (key is not null && cleared == 0)
            {
                return Problem(StatusCodes.Status404NotFound, "no such session", $"pool {pool} has no live affinity entry for that key");
            }
            return Results.Json(new ChangeResult($"{cleared} affinity {(cleared == 1 ? "entry" : "entries")} of pool {pool} cleared"), Json);
        }
        catch (TimeoutException e)
        {
            return Problem(StatusCodes.Status504GatewayTimeout, "not confirmed", e.Message);
        }
    }

    private static IResult WithAffinity(AdminContext admin, string pool, Func<Affinity.AffinityTable, IResult> then)
    {
        var (table, problem) = FindAffinity(admin, pool);
        return table is null ? problem! : then(table);
    }

    /// <summary>The pool's affinity table, or the problem to answer instead (no such pool, or no affinity).</summary>
    private static (Affinity.AffinityTable? Table, IResult? Problem) FindAffinity(AdminContext admin, string pool) =>
        admin.Pools.Find(pool) is not { } handle ? (null, UnknownPool(admin, pool))
        : handle.Affinity is { } table ? (table, null)
        : (null, Problem(StatusCodes.Status409Conflict, "no affinity", $"pool {pool} has affinity.mode = none"));
}
