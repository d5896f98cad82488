using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Frontends;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balancer.Management;

/// <summary>
/// The admin API of one node: cluster membership, pools, backends,
/// affinity and frontends as JSON, <c>/metrics</c>, <c>/healthz</c>, <c>/readyz</c> and the status
/// page. Errors are RFC 7807 problem details with a one-line <c>detail</c>. When
/// <c>balancer.node.admin.token</c> is set, every mutation, and reading session keys, needs
/// <c>Authorization: Bearer TOKEN</c>.
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    /// <summary>JSON as the admin API writes and reads it: camelCase, enums in kebab-case.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        // Served as application/json only, never inlined into HTML, so quotes need no \u escapes.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private const int MaxShownAffinityEntries = 10_000;
    private readonly WebApplication _app;
    private readonly BalancerExtension _balancer;
    private readonly ActorSystem _system;
    private readonly byte[]? _tokenHash;

    internal AdminServer(BalancerExtension balancer, ActorSystem system)
    {
        _balancer = balancer;
        _system = system;
        var settings = balancer.Settings.Node;
        _tokenHash = settings.AdminToken.Length > 0 ? SHA256.HashData(Encoding.UTF8.GetBytes(settings.AdminToken)) : null;

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "balancer-admin" });
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new AkkaLoggerProvider(system, Microsoft.Extensions.Logging.LogLevel.Warning));
        builder.Services.AddRoutingCore();
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 64 * 1024;
            kestrel.Limits.MaxConcurrentConnections = 256;
            kestrel.Listen(ListenSockets.Resolve(settings.AdminBind));
        });
        _app = builder.Build();
        _app.UseRouting();
        _app.Use(RequireTokenAsync);
        MapRoutes(_app);
    }

    /// <summary>Where the admin API listens (port 0 resolved), once started.</summary>
    public IPEndPoint? EndPoint { get; private set; }

    /// <summary>Every route as "METHOD PATTERN" (for documentation and the credentials test).</summary>
    public IReadOnlyList<string> Routes => ((IEndpointRouteBuilder)_app).DataSources
        .SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
        .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"]).Select(m => $"{m} /{e.RoutePattern.RawText?.TrimStart('/')}"))
        .ToList();

    internal async Task StartAsync(CancellationToken cancellationToken)
    {
        await _app.StartAsync(cancellationToken);
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        if (address is not null)
        {
            var uri = new Uri(address);
            EndPoint = new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _app.StopAsync(grace.Token);
        }
        finally
        {
            await _app.DisposeAsync();
        }
    }

    private async Task RequireTokenAsync(HttpContext context, RequestDelegate next)
    {
        var path = context.Request.Path.Value ?? "/";
        var readsSessions = HttpMethods.IsGet(context.Request.Method) && path.Contains("/affinity", StringComparison.Ordinal);
        var mutates = !HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method);
        if (_tokenHash is null || !(mutates || readsSessions) || TokenMatches(context.Request.Headers.Authorization.ToString()))
        {
            await next(context);
            return;
        }
        context.Response.Headers.WWWAuthenticate = "Bearer";
        await Problem(StatusCodes.Status401Unauthorized, "credentials required",
            "this node has an admin token: send Authorization: Bearer <token> (balancer ctl --token)").ExecuteAsync(context);
    }

    private bool TokenMatches(string header)
    {
        const string scheme = "Bearer ";
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        // Comparing hashes keeps the comparison constant-time whatever the lengths.
        var offered = SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(offered, _tokenHash);
    }

    private void MapRoutes(WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", Ready);
        app.MapGet("/metrics", () => Results.Text(_balancer.Prometheus.Scrape(), PrometheusExporter.ContentType));
        app.MapGet("/", () => Results.Content(StatusPage.Html, "text/html; charset=utf-8"));

        app.MapGet("/api/cluster", () => Results.Json(_balancer.Membership.Current(), Json));
        app.MapPost("/api/cluster/{action}", ClusterAction);

        app.MapGet("/api/pools", () => Results.Json(_balancer.Pools.Pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(PoolView.Of), Json));
        app.MapGet("/api/pools/{pool}/backends", (string pool) => WithPool(pool, handle =>
            Results.Json(handle.Snapshot.Backends.Select(BackendView.Of), Json)));
        app.MapPost("/api/pools/{pool}/backends/{backend}/state", SetState);
        app.MapPost("/api/pools/{pool}/backends/{backend}/weight", SetWeight);
        app.MapPost("/api/pools/{pool}/backends/{backend}", AddBackend);
        app.MapDelete("/api/pools/{pool}/backends/{backend}", (string pool, string backend) =>
            WithPoolAsync(pool, _ => ChangeAsync(pool, new PoolRouter.RemoveBackend(backend), $"backend {pool}/{backend} removed")));

        app.MapGet("/api/pools/{pool}/affinity", (string pool, int? limit) => WithAffinity(pool, table =>
        {
            var entries = table.Snapshot();
            var shown = entries.OrderBy(e => e.Key, StringComparer.Ordinal).Take(Math.Clamp(limit ?? 100, 0, MaxShownAffinityEntries))
                .Select(e => AdminText.View(e.Key, e.Value)).ToList();
            var settings = table.Settings;
            return Results.Json(new AffinityView(pool, AdminText.Affinity(settings), settings.Write.ToString().ToLowerInvariant(), entries.Count, shown), Json);
        }));
        app.MapGet("/api/pools/{pool}/affinity/{key}", (string pool, string key) => WithAffinity(pool, table =>
            table.Lookup(key) is { } entry
                ? Results.Json(AdminText.View(key, entry), Json)
                : Problem(StatusCodes.Status404NotFound, "no such session", $"pool {pool} has no live affinity entry for that key")));
        app.MapDelete("/api/pools/{pool}/affinity", (string pool) => ClearAffinityAsync(pool, null));
        app.MapDelete("/api/pools/{pool}/affinity/{key}", (string pool, string key) => ClearAffinityAsync(pool, key));

        app.MapGet("/api/frontends", () => Results.Json(_balancer.Settings.Frontends.Select(f => FrontendView.Of(f, _balancer.FrontendCounters(f.Name))), Json));

        app.MapGet("/api/events", StreamEventsAsync);
        app.MapFallback((HttpContext context) => Problem(StatusCodes.Status404NotFound, "no such route",
            $"{context.Request.Method} {context.Request.Path} is not an admin API route (see GET /api/cluster, /api/pools, /api/frontends)"));
    }

    private IResult Ready()
    {
        var cluster = Cluster.Get(_system);
        if (cluster.SelfMember.Status != MemberStatus.Up)
        {
            return Results.Text($"not ready: this node is {cluster.SelfMember.Status.ToString().ToLowerInvariant()}, not up\n", statusCode: 503);
        }
        var waiting = _balancer.Pools.Pools.Values.Where(p => p.Snapshot.Version == 0).Select(p => p.Name).ToList();
        return waiting.Count > 0
            ? Results.Text($"not ready: pools not loaded yet: {string.Join(", ", waiting)}\n", statusCode: 503)
            : Results.Text("ready\n");
    }

    private async Task<IResult> ClusterAction(string action, HttpContext context)
    {
        var cluster = Cluster.Get(_system);
        if (action == "down-unreachable")
        {
            var unreachable = cluster.State.Unreachable.Select(m => m.Address).ToList();
            foreach (var member in unreachable)
            {
                cluster.Down(member);
            }
            return Results.Json(new ChangeResult(unreachable.Count == 0 ? "no unreachable members" : $"downing {string.Join(", ", unreachable)}"), Json);
        }
        if (action is not ("join" or "leave" or "down"))
        {
            return Problem(StatusCodes.Status404NotFound, "no such cluster action", $"\"{action}\" is not join, leave, down or down-unreachable");
        }
        var (request, problem) = await ReadBodyAsync<MemberRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        Address address;
        try
        {
            address = Address.Parse(request!.Address ?? throw new FormatException("missing \"address\""));
        }
        catch (Exception e) when (e is FormatException or UriFormatException or ArgumentException)
        {
            return Problem(StatusCodes.Status400BadRequest, "bad address", $"address: expected akka.tcp://SYSTEM@HOST:PORT ({e.Message})");
        }
        if (action == "join")
        {
            cluster.Join(address);
            return Results.Json(new ChangeResult($"joining {address}"), Json);
        }
        if (!cluster.State.Members.Any(m => m.Address.Equals(address)))
        {
            return Problem(StatusCodes.Status404NotFound, "unknown member",
                $"{address} is not a member (members: {string.Join(", ", cluster.State.Members.Select(m => m.Address))})");
        }
        if (action == "leave")
        {
            cluster.Leave(address);
            return Results.Json(new ChangeResult($"{address} is leaving"), Json);
        }
        cluster.Down(address);
        return Results.Json(new ChangeResult($"{address} is being downed"), Json);
    }

    private async Task<IResult> SetState(string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<StateRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (!Enum.TryParse<BackendAdminState>(request!.State, ignoreCase: true, out var state) || !Enum.IsDefined(state) || int.TryParse(request.State, out _))
        {
            return Problem(StatusCodes.Status400BadRequest, "bad state", $"state: expected ready, drain or maint, got \"{request.State}\"");
        }
        return await WithPoolAsync(pool, _ => ChangeAsync(pool, new PoolRouter.SetAdminState(backend, state), $"backend {pool}/{backend}: admin state {AdminText.State(state)}"));
    }

    private async Task<IResult> SetWeight(string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<WeightRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (request!.Weight is not { } weight)
        {
            return Problem(StatusCodes.Status400BadRequest, "bad weight", $"weight: expected a number {BackendRules.WeightRange}");
        }
        return await WithPoolAsync(pool, _ => ChangeAsync(pool, new PoolRouter.SetWeight(backend, weight), $"backend {pool}/{backend} weight {weight}"));
    }

    private async Task<IResult> AddBackend(string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<AddBackendRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (string.IsNullOrWhiteSpace(request!.Address))
        {
            return Problem(StatusCodes.Status400BadRequest, "bad address", "address: expected HOST:PORT");
        }
        return await WithPoolAsync(pool, _ => ChangeAsync(pool, new PoolRouter.AddBackend(backend, request.Address, request.Weight), $"backend {pool}/{backend} added at {request.Address}"));
    }

    private async Task<IResult> ClearAffinityAsync(string pool, string? key)
    {
        if (_balancer.Pools.Find(pool) is not { } handle)
        {
            return UnknownPool(pool);
        }
        if (handle.Affinity is not { } table)
        {
            return Problem(StatusCodes.Status409Conflict, "no affinity", $"pool {pool} has affinity.mode = none");
        }
        try
        {
            var cleared = await table.Clear(key).WaitAsync(_balancer.Settings.Node.WriteTimeout + TimeSpan.FromSeconds(2));
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

    private async Task<IResult> ChangeAsync(string pool, object change, string done)
    {
        try
        {
            var reply = await _balancer.PoolRouter(pool).Ask<Status>(change, _balancer.Settings.Node.WriteTimeout + TimeSpan.FromSeconds(2));
            return reply switch
            {
                Status.Success => Results.Json(new ChangeResult(done), Json),
                Status.Failure { Cause: KeyNotFoundException e } => Problem(StatusCodes.Status404NotFound, "unknown backend", e.Message),
                Status.Failure { Cause: ArgumentException e } => Problem(StatusCodes.Status400BadRequest, "bad change", e.Message),
                Status.Failure { Cause: TimeoutException e } => Problem(StatusCodes.Status504GatewayTimeout, "not confirmed by a majority", e.Message),
                Status.Failure f => Problem(StatusCodes.Status500InternalServerError, "change failed", f.Cause.Message),
                _ => Problem(StatusCodes.Status500InternalServerError, "change failed", "unexpected reply from the pool's routing actor"),
            };
        }
        catch (AskTimeoutException)
        {
            return Problem(StatusCodes.Status504GatewayTimeout, "no answer", $"pool {pool}: the routing actor did not answer in time");
        }
    }

    private async Task StreamEventsAsync(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-store";
        using var reader = _balancer.Events.Subscribe();
        var aborted = context.RequestAborted;
        try
        {
            if (context.Request.Query.ContainsKey("recent"))
            {
                foreach (var notable in _balancer.Events.Recent)
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

    private static async Task<(T? Body, IResult? Problem)> ReadBodyAsync<T>(HttpContext context) where T : class
    {
        try
        {
            var body = await JsonSerializer.DeserializeAsync<T>(context.Request.Body, Json, context.RequestAborted);
            return body is null ? (null, Problem(StatusCodes.Status400BadRequest, "bad body", "expected a JSON object")) : (body, null);
        }
        catch (JsonException e)
        {
            return (null, Problem(StatusCodes.Status400BadRequest, "bad body", $"expected a JSON object: {e.Message.Split('.')[0]}"));
        }
        catch (BadHttpRequestException e)
        {
            return (null, Problem(e.StatusCode, "bad body", e.Message));
        }
    }

    private IResult WithPool(string pool, Func<PoolHandle, IResult> then) =>
        _balancer.Pools.Find(pool) is { } handle ? then(handle) : UnknownPool(pool);

    private Task<IResult> WithPoolAsync(string pool, Func<PoolHandle, Task<IResult>> then) =>
        _balancer.Pools.Find(pool) is { } handle ? then(handle) : Task.FromResult(UnknownPool(pool));

    private IResult WithAffinity(string pool, Func<Affinity.AffinityTable, IResult> then) => WithPool(pool, handle =>
        handle.Affinity is { } table ? then(table) : Problem(StatusCodes.Status409Conflict, "no affinity", $"pool {pool} has affinity.mode = none"));

    private IResult UnknownPool(string pool) => Problem(StatusCodes.Status404NotFound, "unknown pool",
        $"no pool \"{pool}\" (pools: {string.Join(", ", _balancer.Pools.Pools.Keys.Order(StringComparer.Ordinal))})");

    private static IResult Problem(int status, string title, string detail) =>
        Results.Json(new { type = "about:blank", title, status, detail }, Json, "application/problem+json", status);

    /// <summary>Starts the admin API of <paramref name="balancer"/> and logs where it listens; a bind failure is logged, not thrown.</summary>
    internal static async Task<AdminServer?> StartAsync(BalancerExtension balancer, ActorSystem system)
    {
        var log = Logging.GetLogger(system, "balancer.admin");
        var settings = balancer.Settings.Node;
        var server = new AdminServer(balancer, system);
        try
        {
            await server.StartAsync(CancellationToken.None);
        }
        catch (Exception e)
        {
            log.Error("admin API could not listen on {0}: {1}", settings.AdminBind, e.Message);
            await server.DisposeAsync();
            throw new InvalidOperationException($"admin API could not listen on {settings.AdminBind}: {e.Message}", e);
        }
        var loopback = server.EndPoint is { } endPoint && IPAddress.IsLoopback(endPoint.Address);
        if (!loopback && settings.AdminToken.Length == 0)
        {
            log.Warning("admin API on {0} is reachable from other hosts and has NO TOKEN: anyone who reaches it can drain backends and down nodes; set balancer.node.admin.token", server.EndPoint);
        }
        log.Info("admin API on http://{0} ({1})", server.EndPoint, settings.AdminToken.Length > 0 ? "token required for changes" : "no token");
        return server;
    }
}
