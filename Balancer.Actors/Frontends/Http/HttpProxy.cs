using System.Net.Http;
using System.Text;
using Balancer.Affinity;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>
/// The request path of an HTTP frontend: read the pool's snapshot, pick a backend, let YARP forward.
/// A backend that refuses the connection is replaced by another (up to the pool's <c>retries</c>)
/// before any byte of the response is sent; when none is left the client gets a short 502/503.
/// </summary>
internal sealed class HttpProxy
{
    private readonly PoolHandle _pool;
    private readonly FrontendCounters _counters;
    private readonly IHttpForwarder _forwarder;
    private readonly string? _hsts;
    private readonly HttpTransformer _transformer;
    private readonly string _frontend;
    private RequestConfigForTimeout _requestConfig = new(TimeSpan.Zero, ForwarderRequestConfig.Empty);

    public HttpProxy(FrontendSettings frontend, PoolHandle pool, FrontendCounters counters, IHttpForwarder forwarder)
    {
        _counters = counters;
        _pool = pool;
        _frontend = frontend.Name;
        _hsts = frontend.Tls?.Hsts is { } maxAge ? $"max-age={(long)maxAge.TotalSeconds}" : null;
        _forwarder = forwarder;
        _transformer = new ForwardingTransformer(frontend);
    }

    public async Task ForwardAsync(HttpContext context)
    {
        FirstRequestDeadline.Arrived(context);
        _counters.Accept();
        using var activity = Telemetry.BalancerTracing.StartRequest(context, _frontend, _pool.Name);
        try
        {
            await ForwardCountedAsync(context, activity);
        }
        finally
        {
            _counters.Close();
        }
    }

    private async Task ForwardCountedAsync(HttpContext context, System.Diagnostics.Activity? activity)
    {
        if (_hsts is not null)
        {
            context.Response.Headers.StrictTransportSecurity = _hsts;
        }
        var selection = await BackendSelection.StartAsync(_pool, new RoutingRequest(context.Connection.RemoteIpAddress, context));
        var snapshot = selection.Snapshot;
        var requestConfig = RequestConfigFor(snapshot.Settings);
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
                    await WriteErrorAsync(context, snapshot, noBackend: selection.Attempts == 0);
                    return;
                }
                if (lease.PinsSession)
                {
                    session ??= new SessionResponse(context, _pool.Affinity!);
                }
                // Set before every attempt: the one callback pins whichever attempt's backend answered.
                session?.Answered(lease);
                served = backend.Name;

                var error = await _forwarder.SendAsync(context, backend.DestinationPrefix, _pool.HttpClient, requestConfig, _transformer);
                if (error == ForwarderError.None)
                {
                    var status = context.Response.StatusCode;
                    lease.Complete(status >= 500 && snapshot.Settings.Passive.Count5xx ? BackendOutcome.Failed : BackendOutcome.Success, status);
                    return;
                }

                var errorFeature = context.Features.Get<IForwarderErrorFeature>();
                if (IsConnectFailure(error, errorFeature?.Exception))
                {
                    lease.Complete(BackendOutcome.ConnectFailed);
                    if (!context.Response.HasStarted && selection.CanRetry && !context.RequestAborted.IsCancellationRequested)
                    {
                        // Nothing reached the backend and nothing reached the client: try the next backend.
                        context.Features.Set<IForwarderErrorFeature>(null);
                        context.Response.StatusCode = StatusCodes.Status200OK;
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

    private ForwarderRequestConfig RequestConfigFor(PoolSettings settings)
    {
        // Rebuilt only when the pool's timeout changes, so requests share one immutable config.
        var current = Volatile.Read(ref _requestConfig);
        if (current.Timeout != settings.RequestTimeout)
        {
            current = new RequestConfigForTimeout(settings.RequestTimeout, new ForwarderRequestConfig { ActivityTimeout = settings.RequestTimeout });
            Volatile.Write(ref _requestConfig, current);
        }
        return current.Config;
    }

    private sealed record RequestConfigForTimeout(TimeSpan Timeout, ForwarderRequestConfig Config);

    private static bool IsClientSide(ForwarderError error) => error is
        ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient or
        ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient or
        ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient or
        ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient;

    private static bool IsConnectFailure(ForwarderError error, Exception? exception) =>
        error == ForwarderError.Request && exception is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError };

    private static Task WriteErrorAsync(HttpContext context, PoolSnapshot snapshot, bool noBackend, int status = 0)
    {
        var response = context.Response;
        response.Clear();
        response.StatusCode = noBackend ? StatusCodes.Status503ServiceUnavailable : (status == 0 ? StatusCodes.Status502BadGateway : status);
        response.ContentType = "text/plain; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        var message = noBackend
            ? $"{response.StatusCode} pool '{snapshot.Name}' has no available backend\n"
            : $"{response.StatusCode} no backend of pool '{snapshot.Name}' answered\n";
        return response.WriteAsync(message, Encoding.UTF8);
    }
}
