using System.Net.Http;
using System.Text;
using Balancer.Affinity;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>
/// The request path of an HTTP frontend: match the route, read its pool's snapshot, pick a backend,
/// let YARP forward. A backend that refuses the connection is replaced by another (up to the pool's
/// <c>retries</c>) before any byte of the response is sent; so is one that resets an idempotent
/// request without a body, or answers it with a status of <c>retry.on-status</c>, within the pool's
/// retry budget. When none is left the client gets a short 502/503.
/// </summary>
internal sealed class HttpProxy
{
    private readonly FrontendCounters _counters;
    private readonly IHttpForwarder _forwarder;
    private readonly string? _hsts;
    private readonly string _frontend;
    private readonly bool _cleartext;
    private volatile Routing _routing;

    /// <summary>What a reload may change for the next request without touching the listeners; swapped whole.</summary>
    private sealed record Routing(RouteTable Routes, TimeSpan TunnelIdleTimeout);
    private RequestConfigCache _requestConfigs = new(new Dictionary<(TimeSpan, Version), ForwarderRequestConfig>());

    public HttpProxy(FrontendSettings frontend, RouteTable routes, FrontendCounters counters, IHttpForwarder forwarder)
    {
        _counters = counters;
        _routing = new Routing(routes, frontend.TunnelIdleTimeout);
        _frontend = frontend.Name;
        _cleartext = frontend.Tls is null;
        _hsts = frontend.Tls?.Hsts is { } maxAge ? $"max-age={(long)maxAge.TotalSeconds}" : null;
        _forwarder = forwarder;
    }

    /// <summary>The routes requests are matched against.</summary>
    public RouteTable Routes => _routing.Routes;

    /// <summary>A reload: the next requests go by <paramref name="routes"/> and the frontend's new tunnel timeout; those in flight finish as they began.</summary>
    public void Reconfigure(FrontendSettings frontend, RouteTable routes) => _routing = new Routing(routes, frontend.TunnelIdleTimeout);

    public async Task ForwardAsync(HttpContext context)
    {
        FirstRequestDeadline.Arrived(context);
        _counters.Accept();
        if (_cleartext && context.Request.Scheme != "http")
        {
            // Cleartext HTTP/2 is accepted as if over TLS (see CleartextHttp2); a client's :scheme
            // of https must not make the backend believe the request came encrypted.
            context.Request.Scheme = "http";
        }
        if (HasTwoFramings(context.Request))
        {
            await RefuseAmbiguousFramingAsync(context);
            _counters.Close();
            return;
        }
        var routing = _routing;
        var route = routing.Routes.Match(context.Request);
        var tunnel = IsUpgrade(context);
        using var activity = Telemetry.BalancerTracing.StartRequest(context, _frontend, route.Pool.Name);
        if (tunnel)
        {
            _counters.OpenTunnel();
        }
        try
        {
            await ForwardCountedAsync(context, activity, route, tunnel ? routing.TunnelIdleTimeout : null);
        }
        finally
        {
            if (tunnel)
            {
                _counters.CloseTunnel();
            }
            _counters.Close();
        }
    }

    /// <summary>
    /// An HTTP/1 request that came with both Content-Length and Transfer-Encoding (Kestrel frames it
    /// by the chunks and keeps the length as X-Content-Length). Such a request is how requests are
    /// smuggled past a proxy whose backend frames by the length instead; it is refused, as Envoy does.
    /// </summary>
    private static bool HasTwoFramings(HttpRequest request) =>
        request.Headers.TransferEncoding.Count > 0 && request.Headers.ContainsKey("X-Content-Length") && !HttpProtocol.IsHttp2(request.Protocol);

    private static Task RefuseAmbiguousFramingAsync(HttpContext context)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status400BadRequest;
        response.ContentType = "text/plain; charset=utf-8";
        // The body that follows cannot be told from the next request: the connection ends here.
        response.Headers.Connection = "close";
        return response.WriteAsync("400 a request may not carry both Content-Length and Transfer-Encoding\n", Encoding.UTF8);
    }

    /// <summary>A WebSocket handshake: an HTTP/1.1 upgrade to websocket, or HTTP/2's extended CONNECT.</summary>
    private static bool IsUpgrade(HttpContext context) =>
        (context.Features.Get<IHttpUpgradeFeature>()?.IsUpgradableRequest == true && IsWebSocketUpgrade(context.Request.Headers.Upgrade))
        || context.Features.Get<IHttpExtendedConnectFeature>()?.IsExtendedConnect == true;

    private static bool IsWebSocketUpgrade(Microsoft.Extensions.Primitives.StringValues upgrade)
    {
        foreach (var value in upgrade)
        {
            if (value is not null && value.Contains("websocket", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    private async Task ForwardCountedAsync(HttpContext context, System.Diagnostics.Activity? activity, Route route, TimeSpan? tunnelIdleTimeout)
    {
        if (_hsts is not null)
        {
            context.Response.Headers.StrictTransportSecurity = _hsts;
        }
        var pool = route.Pool;
        var selection = await BackendSelection.StartAsync(pool, new RoutingRequest(context.Connection.RemoteIpAddress, context));
        var snapshot = selection.Snapshot;
        var settings = snapshot.Settings;
        var tunnel = tunnelIdleTimeout is not null;
        var requestConfig = RequestConfigFor(tunnelIdleTimeout ?? route.RequestTimeout ?? settings.RequestTimeout, pool.Transport);
        var retry = settings.Retry;
        var resendable = !tunnel && retry.Methods.Contains(context.Request.Method) && !HasBody(context);
        if (resendable)
        {
            pool.RetryBudget.CountRequest();
        }
        RetryableResponse? retryable = null;
        if (resendable && !retry.OnStatus.IsEmpty)
        {
            retryable = new RetryableResponse(retry.OnStatus);
            context.Features.Set(retryable);
        }
        SessionResponse? session = null;
        string? served = null;
        try
        {
            while (true)
            {
                var lease = selection.Next();
                if (lease.Backend is not { } backend)
                {
                    session?.Answered(default);
                    // After a dropped answer (the backend that was to be asked next went out of
                    // rotation meanwhile), the client learns that status at least.
                    await WriteErrorAsync(context, snapshot, noBackend: selection.Attempts == 0, status: retryable?.DiscardedStatus ?? 0);
                    return;
                }
                if (lease.PinsSession)
                {
                    session ??= new SessionResponse(context, pool.Affinity!);
                }
                // Set before every attempt: the one callback pins whichever attempt's backend answered.
                session?.Answered(lease);
                served = backend.Name;
                // Armed only when another backend can answer and the budget allows it: otherwise
                // this attempt's answer, whatever it is, goes to the client.
                retryable?.Arm(selection.HasAnotherBackend && pool.RetryBudget.HasRoom(retry));

                var error = await _forwarder.SendAsync(context, backend.DestinationPrefix, pool.HttpClient, requestConfig, route.Transformer);
                if (error == ForwarderError.None)
                {
                    var status = context.Response.StatusCode;
                    if (retryable is { Discarded: true })
                    {
                        lease.CompleteDropped(retryable.DiscardedStatus, failed: settings.Passive.Count5xx);
                        pool.RetryBudget.Take();
                        if (!context.RequestAborted.IsCancellationRequested)
                        {
                            ResetResponse(context);
                            continue;
                        }
                        return;
                    }
                    var failed = status >= 500 && settings.Passive.Count5xx;
                    if (IsGrpc(context.Response.ContentType) && GrpcStatus(context) is var code and >= 0)
                    {
                        backend.Counters.ObserveGrpcStatus(code);
                        failed |= settings.GrpcFailures.Contains(code);
                    }
                    lease.Complete(failed ? BackendOutcome.Failed : BackendOutcome.Success, status);
                    return;
                }

                var errorFeature = context.Features.Get<IForwarderErrorFeature>();
                if (IsTlsFailure(error, errorFeature?.Exception))
                {
                    // The name the handshake checks comes from the client's Host (preserve-host):
                    // a client must not be able to get backends ejected, or retried through, by
                    // naming a host they have no certificate for. Health checks verify the backends.
                    lease.Complete(BackendOutcome.Abandoned);
                }
                else if (IsConnectFailure(error, errorFeature?.Exception))
                {
                    lease.Complete(BackendOutcome.ConnectFailed);
                    if (!context.Response.HasStarted && selection.CanRetry && !context.RequestAborted.IsCancellationRequested)
                    {
                        // Nothing reached the backend and nothing reached the client: try the next backend.
                        ResetResponse(context);
                        continue;
                    }
                }
                else if (IsClientSide(error))
                {
                    // The client went away or sent a broken body: nothing to hold against the backend,
                    // and YARP's own status (400, or none for an aborted client) stands.
                    lease.Complete(BackendOutcome.Abandoned);
                    return;
                }
                else
                {
                    lease.Complete(BackendOutcome.Failed);
                    // Reset or closed before any response byte: an idempotent request without a body
                    // may go to another backend.
                    if (error == ForwarderError.Request && resendable && retry.OnReset && !context.Response.HasStarted
                        && selection.CanRetry && !context.RequestAborted.IsCancellationRequested && pool.RetryBudget.TryTake(retry))
                    {
                        ResetResponse(context);
                        continue;
                    }
                }

                if (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
                {
                    session?.Answered(default);
                    await WriteErrorAsync(context, snapshot, noBackend: false, status: context.Response.StatusCode is >= 500 ? context.Response.StatusCode : 502);
                }
                return;
            }
        }
        finally
        {
            Telemetry.BalancerTracing.Served(activity, served, selection.Attempts, selection.AffinityOutcome, context.Response.StatusCode);
        }
    }

    private void ResetResponse(HttpContext context)
    {
        context.Features.Set<IForwarderErrorFeature>(null);
        ClearResponse(context.Response);
    }

    /// <summary>Drops an attempt's status and headers, keeping what Balancer itself sends with every answer (HSTS).</summary>
    private void ClearResponse(HttpResponse response)
    {
        response.Clear();
        if (_hsts is not null)
        {
            response.Headers.StrictTransportSecurity = _hsts;
        }
    }

    /// <summary>True when the request carries a body (which YARP streams, so it cannot be sent twice).</summary>
    private static bool HasBody(HttpContext context) =>
        context.Features.Get<IHttpRequestBodyDetectionFeature>() is { } detection ? detection.CanHaveBody : context.Request.ContentLength is not (null or 0);

    private static bool IsGrpc(string? contentType) =>
        contentType is not null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);

    /// <summary>The call's grpc-status (from the trailers, or the headers of a trailers-only response), or -1.</summary>
    private static int GrpcStatus(HttpContext context)
    {
        var trailers = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers;
        var value = trailers is not null && trailers.TryGetValue("grpc-status", out var fromTrailers) ? fromTrailers
            : context.Response.Headers.TryGetValue("grpc-status", out var fromHeaders) ? fromHeaders
            : default;
        return value.Count > 0 && int.TryParse(value[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) ? code : -1;
    }

    /// <summary>
    /// Pins a new (or moved) session once its response starts, to the backend that answered: one
    /// callback per request whatever the number of attempts, so that a retry after a refused
    /// connection never pins (or names in a cookie) the backend that refused.
    /// </summary>
    private sealed class SessionResponse
    {
        private readonly HttpContext _context;
        private readonly AffinityTable _affinity;
        private BackendLease _answering;

        public SessionResponse(HttpContext context, AffinityTable affinity)
        {
            _context = context;
            _affinity = affinity;
            context.Response.OnStarting(static state => ((SessionResponse)state).OnStartingAsync(), this);
        }

        /// <summary>The attempt whose response would start next; none while Balancer writes an error of its own.</summary>
        public void Answered(BackendLease lease) => _answering = lease;

        private Task OnStartingAsync()
        {
            var lease = _answering;
            if (!lease.PinsSession)
            {
                return Task.CompletedTask;
            }
            var settings = _affinity.Settings;
            switch (settings.Mode)
            {
                case AffinityMode.Cookie:
                    // No key yet (the cluster's generated key has not arrived): balanced, not pinned.
                    if (_affinity.Cookie!.Issue(lease.Backend!.Name) is { } value)
                    {
                        _context.Response.Cookies.Append(settings.CookieName, value, new CookieOptions
                        {
                            HttpOnly = true,
                            Path = "/",
                            SameSite = SameSiteMode.Lax,
                            MaxAge = settings.Ttl,
                            Secure = _context.Request.IsHttps,
                        });
                    }
                    return Task.CompletedTask;
                case AffinityMode.LearnCookie:
                    // The session id is the backend's own cookie: learn it from the response that sets it.
                    var learned = LearnedSession(_context.Response.Headers.SetCookie, settings.KeyName);
                    return learned is null
                        ? lease.PinSessionAsync()
                        : Task.WhenAll(lease.PinSessionAsync(), lease.PinLearnedSessionAsync(learned));
                default:
                    return lease.PinSessionAsync();
            }
        }
    }

    private static string? LearnedSession(Microsoft.Extensions.Primitives.StringValues setCookies, string name)
    {
        foreach (var header in setCookies)
        {
            if (header is null || !header.StartsWith(name, StringComparison.Ordinal) || header.Length <= name.Length || header[name.Length] != '=')
            {
                continue;
            }
            var end = header.IndexOf(';');
            var value = header[(name.Length + 1)..(end < 0 ? header.Length : end)].Trim();
            return value.Length is > 0 and <= 512 ? value : null;
        }
        return null;
    }

    private ForwarderRequestConfig RequestConfigFor(TimeSpan timeout, BackendTransport transport)
    {
        // One immutable config per (timeout, version) shared by every request; a new one (rare: a
        // pool's timeout changed) replaces the whole cache.
        var cache = Volatile.Read(ref _requestConfigs);
        var key = (timeout, transport.Version);
        if (cache.Configs.TryGetValue(key, out var config))
        {
            return config;
        }
        config = new ForwarderRequestConfig
        {
            ActivityTimeout = timeout,
            Version = transport.Version,
            VersionPolicy = transport.VersionPolicy,
        };
        Volatile.Write(ref _requestConfigs, new RequestConfigCache(new Dictionary<(TimeSpan, Version), ForwarderRequestConfig>(cache.Configs) { [key] = config }));
        return config;
    }

    private sealed record RequestConfigCache(Dictionary<(TimeSpan, Version), ForwarderRequestConfig> Configs);

    private static bool IsClientSide(ForwarderError error) => error is
        ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient or
        ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient or
        ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient or
        ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient;

    private static bool IsTlsFailure(ForwarderError error, Exception? exception) =>
        error == ForwarderError.Request && exception is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError };

    private static bool IsConnectFailure(ForwarderError error, Exception? exception) =>
        error == ForwarderError.Request && exception is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError };

    private Task WriteErrorAsync(HttpContext context, PoolSnapshot snapshot, bool noBackend, int status = 0)
    {
        var response = context.Response;
        ClearResponse(response);
        response.StatusCode = noBackend ? StatusCodes.Status503ServiceUnavailable : (status == 0 ? StatusCodes.Status502BadGateway : status);
        response.ContentType = "text/plain; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        return response.WriteAsync(ErrorText(response.StatusCode, snapshot.Name, noBackend), Encoding.UTF8);
    }

    /// <summary>The text of Balancer's own answer when no backend is available (503) or none answered (502, 504), on either way in.</summary>
    internal static string ErrorText(int status, string pool, bool noBackend) => noBackend
        ? $"{status} pool '{pool}' has no available backend\n"
        : $"{status} no backend of pool '{pool}' answered\n";
}

/// <summary>
/// Set on a request the pool may send again after a status of <c>retry.on-status</c>: while armed
/// (another backend may still be tried), the transformer drops such a response instead of passing
/// it on, and the proxy tries the next backend.
/// </summary>
internal sealed class RetryableResponse(System.Collections.Immutable.ImmutableArray<int> statuses)
{
    private bool _armed;

    /// <summary>True when the last attempt's response was dropped.</summary>
    public bool Discarded { get; private set; }

    /// <summary>The status of the dropped response.</summary>
    public int DiscardedStatus { get; private set; }

    /// <summary>Before an attempt: <paramref name="another"/> says whether another backend could be tried.</summary>
    public void Arm(bool another)
    {
        _armed = another;
        Discarded = false;
        DiscardedStatus = 0;
    }

    /// <summary>True (and remembered) when a response of <paramref name="status"/> is to be dropped.</summary>
    public bool Discards(int status)
    {
        if (!_armed || !statuses.Contains(status))
        {
            return false;
        }
        Discarded = true;
        DiscardedStatus = status;
        return true;
    }
}
