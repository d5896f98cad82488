using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>
/// The admin API's diagnostic routes, what an Akka.NET operator reaches for: the split-brain
/// resolver's settings and recent decisions (<c>GET /api/cluster/sbr</c>), where the probe shards
/// live (<c>GET /api/cluster/sharding</c>), the node's actor tree (<c>GET /api/actors</c>), the
/// node's recent log and its level
/// (<c>GET /api/log</c>, <c>POST /api/log/level</c>). The log needs the token even to read: it
/// names client addresses, which are session keys in <c>source-ip</c> mode. Akka's loggers fix
/// their level when they are made, so a lower level takes effect at once, while a higher one
/// (debug) reaches only the actors started after the change.
/// </summary>
internal static class DiagnosticsEndpoints
{
    private const int MaxLogLines = Telemetry.RecentLog.Capacity;

    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/cluster/sbr", () => Results.Json(SplitBrainResolver(admin), Json));
        routes.MapGet("/api/cluster/sharding", () => ShardingAsync(admin));
        routes.MapGet("/api/actors", async () =>
        {
            var (paths, truncated) = await ActorHierarchy.WalkAsync(admin.System);
            return Results.Json(new ActorHierarchyView(paths, truncated), Json);
        });
        routes.MapGet("/api/log", (int? lines) => Results.Json(new LogView(
            admin.System.EventStream.LogLevel.ToString().Replace("Level", "").ToLowerInvariant(),
            admin.RecentLog.Last(Math.Clamp(lines ?? 50, 1, MaxLogLines))), Json)).RequireToken();
        routes.MapPost("/api/log/level", async (HttpContext context) =>
        {
            var (request, problem) = await ReadBodyAsync<LogLevelRequest>(context);
            if (problem is not null)
            {
                return problem;
            }
            if (request!.Level?.ToLowerInvariant() is not ("debug" or "info" or "warning" or "error") || !Enum.TryParse<LogLevel>(request.Level + "Level", ignoreCase: true, out var level))
            {
                return Problem(StatusCodes.Status400BadRequest, "bad level", $"level: expected debug, info, warning or error, got \"{request.Level}\"");
            }
            admin.System.EventStream.SetLogLevel(level);
            // At warning: the change shows in the log at every level but error.
            admin.System.Log.Warning("log level set to {0} through the admin API", request.Level.ToLowerInvariant());
            return Results.Json(new ChangeResult($"log level {request.Level.ToLowerInvariant()}"), Json);
        }).RequireToken();
    }

    private static SplitBrainResolverView SplitBrainResolver(AdminContext admin)
    {
        var config = admin.System.Settings.Config;
        var cluster = config.GetConfig("akka.cluster");
        var provider = cluster.GetString("downing-provider-class", "");
        var sbr = cluster.GetConfig("split-brain-resolver");
        var detector = cluster.GetConfig("failure-detector");
        var decisions = admin.RecentLog.Last(20, line =>
            line.Source.Contains("SplitBrainResolver", StringComparison.Ordinal) || line.Message.StartsWith("SBR ", StringComparison.Ordinal));
        return new SplitBrainResolverView(
            provider.Length == 0 ? "none (members are downed only by an operator)" : provider.Split(',')[0],
            sbr.GetString("active-strategy", ""),
            sbr.GetTimeSpan("stable-after", TimeSpan.Zero).TotalSeconds,
            sbr.GetString("down-all-when-unstable", "on"),
            detector.GetTimeSpan("heartbeat-interval", TimeSpan.Zero).TotalSeconds,
            detector.GetTimeSpan("acceptable-heartbeat-pause", TimeSpan.Zero).TotalSeconds,
            decisions);
    }

    private static async Task<IResult> ShardingAsync(AdminContext admin)
    {
        if (!ClusterSharding.Get(admin.System).ShardTypeNames.Contains(Health.ProbeEntity.TypeName))
        {
            return Problem(StatusCodes.Status409Conflict, "no sharded probes", "no pool probes its backends with health-check.placement = sharded");
        }
        var region = ClusterSharding.Get(admin.System).ShardRegion(Health.ProbeEntity.TypeName);
        var timeout = TimeSpan.FromSeconds(3);
        try
        {
            var stats = await region.Ask<ClusterShardingStats>(new GetClusterShardingStats(timeout), timeout + TimeSpan.FromSeconds(1));
            var regions = stats.Regions
                .OrderBy(r => r.Key.ToString(), StringComparer.Ordinal)
                .Select(r => new ShardRegionView(r.Key.ToString(), r.Value.Stats.Count, r.Value.Stats.Values.Sum(),
                    r.Value.Stats.OrderBy(s => s.Key, StringComparer.Ordinal).ToDictionary(s => s.Key, s => s.Value)))
                .ToList();
            return Results.Json(new ShardingView(Health.ProbeEntity.TypeName, regions), Json);
        }
        catch (AskTimeoutException)
        {
            return Problem(StatusCodes.Status504GatewayTimeout, "no answer", "the probe regions did not answer within 3 s (no shard coordinator yet?)");
        }
    }

    private sealed record LogLevelRequest(string? Level);
}

/// <summary>The node's log level and its last lines, as <c>GET /api/log</c> shows them.</summary>
public sealed record LogView(string Level, IReadOnlyList<Telemetry.RecentLog.LogLine> Lines);

/// <summary>The split-brain resolver as <c>GET /api/cluster/sbr</c> shows it: its settings, the failure detector's, and its last decisions on this node.</summary>
public sealed record SplitBrainResolverView(
    string DowningProvider,
    string Strategy,
    double StableAfterSeconds,
    string DownAllWhenUnstable,
    double HeartbeatIntervalSeconds,
    double AcceptableHeartbeatPauseSeconds,
    IReadOnlyList<Telemetry.RecentLog.LogLine> Decisions);

/// <summary>Where the probe shards live, as <c>GET /api/cluster/sharding</c> shows it.</summary>
public sealed record ShardingView(string TypeName, IReadOnlyList<ShardRegionView> Regions);

/// <summary>One member's probe region: its shards and the probes (entities) in each.</summary>
public sealed record ShardRegionView(string Address, int Shards, int Probes, IReadOnlyDictionary<string, int> ProbesPerShard);

/// <summary>The node's actor tree, as <c>GET /api/actors</c> shows it: every actor's path, sorted; truncated at a limit.</summary>
public sealed record ActorHierarchyView(IReadOnlyList<string> Actors, bool Truncated);
