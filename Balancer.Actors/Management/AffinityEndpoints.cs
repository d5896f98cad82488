using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>The admin API's session routes: list, show and clear a pool's sessions. Every one needs the token, reads included. Sessions are listed by their stored hashes; show and clear take a session key (hashed here) or a listed hash.</summary>
internal static class AffinityEndpoints
{
    private const int MaxShownAffinityEntries = 10_000;

    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/pools/{pool}/affinity", (string pool, int? limit) => WithAffinity(admin, pool, table =>
        {
            var entries = table.Snapshot();
            var shown = entries.OrderBy(e => e.Key).Take(Math.Clamp(limit ?? 100, 0, MaxShownAffinityEntries))
                .Select(e => AdminText.View(e.Key, e.Value)).ToList();
            var settings = table.Settings;
            return Results.Json(new AffinityView(pool, AdminText.Affinity(settings), settings.Write.ToString().ToLowerInvariant(), entries.Count, shown), Json);
        })).RequireToken();
        routes.MapGet("/api/pools/{pool}/affinity/{key}", (string pool, string key) => WithAffinity(admin, pool, table =>
            HashOf(table, key) is { } hash && table.Lookup(hash) is { } entry
                ? Results.Json(AdminText.View(hash, entry), Json)
                : NoSession(pool))).RequireToken();
        routes.MapDelete("/api/pools/{pool}/affinity", (string pool) => ClearAffinityAsync(admin, pool, null)).RequireToken();
        routes.MapDelete("/api/pools/{pool}/affinity/{key}", (string pool, string key) => ClearAffinityAsync(admin, pool, key)).RequireToken();
    }

    /// <summary>
    /// The hash a session is stored under: of the key given, or the hash itself written as
    /// <c>hash:</c> and 16 hex digits (as listings show sessions). Null while the cluster's affinity key is unknown.
    /// </summary>
    private static ulong? HashOf(Affinity.AffinityTable table, string key) =>
        key.StartsWith(HashPrefix, StringComparison.Ordinal) && key.Length == HashPrefix.Length + 16
        && ulong.TryParse(key.AsSpan(HashPrefix.Length), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out var hash)
            ? hash
            : table.HashOf(key);

    /// <summary>How a listing names a session: its stored hash (the key itself is never stored).</summary>
    internal const string HashPrefix = "hash:";

    private static IResult NoSession(string pool) =>
        Problem(StatusCodes.Status404NotFound, "no such session", $"pool {pool} has no live affinity entry for that key");

    private static async Task<IResult> ClearAffinityAsync(AdminContext admin, string pool, string? key)
    {
        var (table, problem) = FindAffinity(admin, pool);
        if (table is null)
        {
            return problem!;
        }
        try
        {
            ulong? hash = null;
            if (key is not null)
            {
                if (HashOf(table, key) is not { } one)
                {
                    return NoSession(pool);
                }
                hash = one;
            }
            // Clears spread at the pace pins do (a few thousand a round): a whole table takes seconds.
            var cleared = await table.Clear(hash).WaitAsync(admin.Node.WriteTimeout + TimeSpan.FromSeconds(2 + table.Count / 5000));
            if (key is not null && cleared == 0)
            {
                return NoSession(pool);
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
