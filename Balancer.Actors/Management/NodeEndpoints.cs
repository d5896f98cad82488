using System.Text.Json;
using Akka.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>
/// The admin API's node routes: <c>/healthz</c>, <c>/readyz</c>, <c>/metrics</c>, the status page,
/// the frontends, and the event stream (<c>/api/events</c>, server-sent events).
/// </summary>
internal static class NodeEndpoints
{
    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/healthz", () => Results.Text("ok\n"));
        routes.MapGet("/readyz", () => Ready(admin));
        routes.MapGet("/metrics", () => Results.Text(admin.Prometheus.Scrape(), Telemetry.PrometheusExporter.ContentType));
        routes.MapGet("/", () => Results.Content(StatusPage.Render(admin), "text/html; charset=utf-8"));
        routes.MapGet("/api/frontends", () => Results.Json(admin.Frontends.Select(f => FrontendView.Of(f, admin.FrontendCounters(f.Name))), Json));
        var streams = new EventStreamLimit();
        routes.MapGet("/api/events", (HttpContext context) => StreamEventsAsync(admin, streams, context));
    }

    private static IResult Ready(AdminContext admin)
    {
        var cluster = Cluster.Get(admin.System);
        if (cluster.SelfMember.Status != MemberStatus.Up)
        {
            // A node rejoining its cluster serves with its last state, but is no member: an upstream
            // balancer checking this sends new clients to the members meanwhile.
            var dataPlane = BalancerExtension.Get(admin.System).DataPlane;
            return Results.Text(dataPlane.Incarnation > 1 && dataPlane.OutlivesActorSystem
                ? $"not ready: rejoining the cluster (incarnation {dataPlane.Incarnation}); its frontends keep serving with the last state\n"
                : $"not ready: this node is {cluster.SelfMember.Status.ToString().ToLowerInvariant()}, not up\n", statusCode: 503);
        }
        var waiting = admin.Pools.Pools.Values.Where(p => p.Snapshot.Version == 0).Select(p => p.Name).ToList();
        if (waiting.Count > 0)
        {
            return Results.Text($"not ready: pools not loaded yet: {string.Join(", ", waiting)}\n", statusCode: 503);
        }
        if (Replication.BalancerReplicator.Get(admin.System).Trouble is { } replication)
        {
            return Results.Text($"not ready: replication does not work since {replication.Since:HH:mm:ss}Z: {replication.Reason}\n", statusCode: 503);
        }
        // A node whose store cannot write serves and replicates, but would come back from a restart
        // without the changes made meanwhile: an orchestrator should know before it restarts others.
        if (Replication.DurableStoreHealth.Get(admin.System).Failure is { } store)
        {
            return Results.Text($"not ready: durable store {store.Directory} cannot write since {store.Since:HH:mm:ss}Z ({store.Reason})\n", statusCode: 503);
        }
        // Ready all the same: the data plane serves with what etcd said last.
        return BalancerExtension.Get(admin.System).EtcdStatus.Current is { Reachable: false } etcd
            ? Results.Text($"ready\netcd unreachable since {etcd.Since:HH:mm:ss}Z ({etcd.Endpoint}: {etcd.Reason}): serving with the configuration and backends it had at revision {etcd.Revision}\n")
            : Results.Text("ready\n");
    }

    private static async Task StreamEventsAsync(AdminContext admin, EventStreamLimit streams, HttpContext context)
    {
        // Event streams stay open: a cap (total and per client address) keeps them from taking every
        // connection the admin API has, so /healthz, /readyz, /metrics and ctl always get through.
        var client = context.Connection.RemoteIpAddress?.ToString() ?? "";
        if (!streams.TryEnter(client, out var refusal))
        {
            context.Response.Headers.RetryAfter = "5";
            await Problem(StatusCodes.Status429TooManyRequests, "too many event streams", refusal).ExecuteAsync(context);
            return;
        }
        try
        {
            await StreamAsync(admin, context);
        }
        finally
        {
            streams.Leave(client);
        }
    }

    private static async Task StreamAsync(AdminContext admin, HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-store";
        using var reader = admin.Events.Subscribe();
        var aborted = context.RequestAborted;
        try
        {
            if (context.Request.Query.ContainsKey("recent"))
            {
                foreach (var notable in admin.Events.Recent)
                {
                    await WriteEventAsync(context.Response, notable, aborted);
                }
            }
            await context.Response.WriteAsync(": connected\n\n", aborted);
            await context.Response.Body.FlushAsync(aborted);
            while (!aborted.IsCancellationRequested)
            {
                using var heartbeat = CancellationTokenSource.CreateLinkedTokenSource(aborted);
                heartbeat.CancelAfter(TimeSpan.FromSeconds(15));
                try
                {
                    var notable = await reader.Events.ReadAsync(heartbeat.Token);
                    await WriteEventAsync(context.Response, notable, aborted);
                }
                catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
                {
                    // A comment line now and then tells proxies and clients the stream is alive.
                    await context.Response.WriteAsync(": keep-alive\n\n", aborted);
                    await context.Response.Body.FlushAsync(aborted);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Open event streams, in total and per client address.</summary>
    internal sealed class EventStreamLimit
    {
        /// <summary>Streams open at once on one node; the admin API takes 256 connections.</summary>
        public const int MaxTotal = 64;

        /// <summary>Streams open at once from one client address (a status page tab and a ctl tail each hold one).</summary>
        public const int MaxPerClient = 8;

        private readonly Dictionary<string, int> _perClient = new();
        private int _total;

        public bool TryEnter(string client, out string refusal)
        {
            lock (_perClient)
            {
                var mine = _perClient.GetValueOrDefault(client);
                refusal = _total >= MaxTotal ? $"{MaxTotal} event streams are open on this node; close one or try again later"
                    : mine >= MaxPerClient ? $"{MaxPerClient} event streams are open from {client}; close one or try again later"
                    : "";
                if (refusal.Length > 0)
                {
                    return false;
                }
                _perClient[client] = mine + 1;
                _total++;
                return true;
            }
        }

        public void Leave(string client)
        {
            lock (_perClient)
            {
                _total--;
                if (--_perClient[client] == 0)
                {
                    _perClient.Remove(client);
                }
            }
        }
    }

    private static async Task WriteEventAsync(HttpResponse response, NotableEvent notable, CancellationToken cancellationToken)
    {
        await response.WriteAsync("data: " + JsonSerializer.Serialize(notable, Json) + "\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
