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
        routes.MapGet("/api/events", (HttpContext context) => StreamEventsAsync(admin, context));
    }

    private static IResult Ready(AdminContext admin)
    {
        var cluster = Cluster.Get(admin.System);
        if (cluster.SelfMember.Status != MemberStatus.Up)
        {
            return Results.Text($"not ready: this node is {cluster.SelfMember.Status.ToString().ToLowerInvariant()}, not up\n", statusCode: 503);
        }
        var waiting = admin.Pools.Pools.Values.Where(p => p.Snapshot.Version == 0).Select(p => p.Name).ToList();
        return waiting.Count > 0
            ? Results.Text($"not ready: pools not loaded yet: {string.Join(", ", waiting)}\n", statusCode: 503)
            : Results.Text("ready\n");
    }

    private static async Task StreamEventsAsync(AdminContext admin, HttpContext context)
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

    private static async Task WriteEventAsync(HttpResponse response, NotableEvent notable, CancellationToken cancellationToken)
    {
        await response.WriteAsync("data: " + JsonSerializer.Serialize(notable, Json) + "\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
