using System.Net;
using System.Security.Cryptography;
using System.Text;
using Akka.Event;
using Balancer.Frontends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>
/// The admin API of one node: cluster membership, pools, backends,
/// affinity and frontends as JSON, <c>/metrics</c>, <c>/healthz</c>, <c>/readyz</c> and the status
/// page. Errors are RFC 7807 problem details with a one-line <c>detail</c>. When
/// <c>balancer.node.admin.token</c> is set, every mutation, and reading session keys, needs
/// <c>Authorization: Bearer TOKEN</c>. Closed to web pages whatever the token: a request must name
/// this server in its Host header (so a DNS name an attacker controls cannot reach it), a mutation
/// must come with a JSON body type (which a page can send cross-site only after a CORS preflight,
/// and no CORS header is ever sent) and, when it has an Origin, from this server's own origin.
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly byte[]? _tokenHash;
    private readonly HashSet<string> _allowedHosts;
    private readonly bool _wildcardBind;

    internal AdminServer(AdminContext admin)
    {
        var settings = admin.Node;
        var bound = ListenSockets.Resolve(settings.AdminBind).Address;
        _wildcardBind = bound.Equals(IPAddress.Any) || bound.Equals(IPAddress.IPv6Any);
        _tokenHash = settings.AdminToken.Length > 0 ? SHA256.HashData(Encoding.UTF8.GetBytes(settings.AdminToken)) : null;

        var builder = KestrelHosting.CreateBuilder("balancer-admin", admin.System);
        builder.Services.AddRoutingCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = 64 * 1024;
            kestrel.Limits.MaxConcurrentConnections = 256;
            kestrel.Listen(ListenSockets.Resolve(settings.AdminBind));
        });
        _app = builder.Build();
        _allowedHosts = AllowedHosts(settings);
        _app.Use(RefuseCrossSiteAsync);
        _app.UseRouting();
        _app.Use(RequireTokenAsync);
        NodeEndpoints.Map(_app, admin);
        ClusterEndpoints.Map(_app, admin);
        PoolEndpoints.Map(_app, admin);
        AffinityEndpoints.Map(_app, admin);
        DiagnosticsEndpoints.Map(_app, admin);
        ConfigEndpoints.Map(_app, admin);
        _app.MapFallback((HttpContext context) => Problem(StatusCodes.Status404NotFound, "no such route",
            $"{context.Request.Method} {context.Request.Path} is not an admin API route (see GET /api/cluster, /api/pools, /api/frontends)"));
    }

    /// <summary>Where the admin API listens (port 0 resolved), once started.</summary>
    public IPEndPoint? EndPoint { get; private set; }

    /// <summary>Every route as "METHOD PATTERN" (for documentation and the credentials test).</summary>
    public IReadOnlyList<string> Routes => ((IEndpointRouteBuilder)_app).DataSources
        .SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
        .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"]).Select(m => $"{m} /{e.RoutePattern.RawText?.TrimStart('/')}"))
        .ToList();

    internal async Task StartAsync(CancellationToken cancellationToken) =>
        EndPoint = (await KestrelHosting.StartAsync(_app, cancellationToken)).FirstOrDefault();

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            await KestrelHosting.StopAsync(_app, TimeSpan.FromSeconds(2));
        }
        finally
        {
            await _app.DisposeAsync();
        }
    }

    /// <summary>The Host names requests may use: the bound address, localhost on loopback, any IP on a wildcard bind, and allowed-hosts.</summary>
    private static HashSet<string> AllowedHosts(Configuration.NodeSettings settings)
    {
        var hosts = new HashSet<string>(settings.AdminAllowedHosts, StringComparer.OrdinalIgnoreCase);
        var bound = ListenSockets.Resolve(settings.AdminBind).Address;
        hosts.Add(bound.ToString());
        if (IPAddress.IsLoopback(bound) || bound.Equals(IPAddress.Any) || bound.Equals(IPAddress.IPv6Any))
        {
            hosts.Add("localhost");
        }
        return hosts;
    }

    private async Task RefuseCrossSiteAsync(HttpContext context, RequestDelegate next)
    {
        var request = context.Request;
        var host = request.Host.Host.Trim('[', ']');
        if (!_allowedHosts.Contains(host) && !(_wildcardBind && IPAddress.TryParse(host, out _)))
        {
            // 421 Misdirected Request: this server does not answer for that name.
            await Problem(StatusCodes.Status421MisdirectedRequest, "unknown host",
                $"this admin API answers for {string.Join(", ", _allowedHosts.Order(StringComparer.Ordinal))}{(_wildcardBind ? " and its IP addresses" : "")}, not \"{request.Host.Host}\" (balancer.node.admin.allowed-hosts)").ExecuteAsync(context);
            return;
        }
        if (!HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method) && !HttpMethods.IsOptions(request.Method))
        {
            if (request.Headers.Origin is { Count: > 0 } origin && !string.Equals(origin.ToString(), $"{request.Scheme}://{request.Host}", StringComparison.OrdinalIgnoreCase))
            {
                await Problem(StatusCodes.Status403Forbidden, "cross-origin request",
                    $"a change from origin {origin} is refused: the admin API takes changes from ctl and scripts, not from web pages").ExecuteAsync(context);
                return;
            }
            var mediaType = request.ContentType is { } type && Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(type, out var parsed) ? parsed.MediaType.ToString() : null;
            if (HttpMethods.IsPost(request.Method) || request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0)
            {
                if (!string.Equals(mediaType, "application/json", StringComparison.OrdinalIgnoreCase))
                {
                    await Problem(StatusCodes.Status415UnsupportedMediaType, "JSON expected",
                        $"a change needs Content-Type: application/json, got {(mediaType is null ? "none" : mediaType)}").ExecuteAsync(context);
                    return;
                }
            }
        }
        await next(context);
    }

    private async Task RequireTokenAsync(HttpContext context, RequestDelegate next)
    {
        // Decided by the endpoint the request matched (routing ignores case), never by the path's text.
        var needsToken = context.GetEndpoint()?.Metadata.GetMetadata<TokenRequired>() is not null;
        if (_tokenHash is null || !needsToken || TokenMatches(context.Request.Headers.Authorization.ToString()))
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

    /// <summary>Starts the admin API of <paramref name="admin"/>'s node and logs where it listens; a bind failure is logged, not thrown.</summary>
    internal static async Task<AdminServer?> StartAsync(AdminContext admin)
    {
        var log = Logging.GetLogger(admin.System, "balancer.admin");
        var settings = admin.Node;
        var server = new AdminServer(admin);
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
