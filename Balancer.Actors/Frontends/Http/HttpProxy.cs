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
    private RequestConfigForTimeout _requestConfig = new(TimeSpan.Zero, ForwarderRequestConfig.Empty);

    public HttpProxy(FrontendSettings frontend, PoolHandle pool, FrontendCounters counters, IHttpForwarder forwarder)
    {
        _counters = counters;
        _pool = pool;
        _hsts = frontend.Tls?.Hsts is { } maxAge ? $"max-age={(long)maxAge.TotalSeconds}" : null;
        _forwarder = forwarder;
        _transformer = new ForwardingTransformer(frontend);
    }

    public async Task ForwardAsync(HttpContext context)
    {
        FirstRequestDeadline.Arrived(context);
        _counters.Accept();
        try
        {
            await ForwardCountedAsync(context);
        }
        finally
        {
            _counters.Close();
        }
    }

    private async Task ForwardCountedAsync(HttpContext context)
    {
        if (_hsts is not null)
        {
            context.Response.Headers.StrictTransportSecurity = _hsts;
        }
        var snapshot = _pool.Snapshot;
        var requestConfig = RequestConfigFor(snapshot.Settings);
        var request = new RoutingRequest(context.Connection.RemoteIpAddress, context);
        var attempted = new AttemptedBackends();
        var attemptsAllowed = 1 + snapshot.Settings.Retries;
        var affinity = _pool.Affinity;
        string? sessionKey = null;
        Backend? pinned = null;
        var moved = false;
        if (affinity is not null)
        {
            (pinned, sessionKey, moved) = await FindPinnedAsync(affinity, snapshot, request);
        }
        var tries = 0;
        while (true)
        {
            var backend = snapshot.Select(in request, ref attempted, pinned);
            tries++;
            if (backend is null)
            {
                await WriteErrorAsync(context, snapshot, attempted.Count == 0);
                return;
            }
            if (affinity is not null && (backend != pinned || moved))
            {
                await PinAsync(affinity, context, sessionKey, backend);
            }

            if (tries > 1)
            {
                _pool.CountRetry();
            }
            backend.Counters.Start();
            var sent = System.Diagnostics.Stopwatch.GetTimestamp();
            var error = await _forwarder.SendAsync(context, backend.DestinationPrefix, _pool.HttpClient, requestConfig, _transformer);
            if (error == ForwarderError.None)
            {
                backend.Counters.ObserveResponse(context.Response.StatusCode, System.Diagnostics.Stopwatch.GetTimestamp() - sent);
                backend.Counters.Finish(success: context.Response.StatusCode < 500 || !snapshot.Settings.Passive.Count5xx);
                return;
            }

            var errorFeature = context.Features.Get<IForwarderErrorFeature>();
            if (IsConnectFailure(error, errorFeature?.Exception))
            {
                backend.Counters.ConnectFailed();
                if (!context.Response.HasStarted && tries < attemptsAllowed && !context.RequestAborted.IsCancellationRequested)
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
                backend.Counters.End();
                return;
            }
            else
            {
                backend.Counters.Finish(success: false);
            }

            if (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
            {
                await WriteErrorAsync(context, snapshot, noBackend: false, status: context.Response.StatusCode is >= 500 ? context.Response.StatusCode : 502);
            }
            return;
        }
    }

    /// <summary>The backend the request's session is pinned to, if it may still serve it.</summary>
    private static async ValueTask<(Backend? Pinned, string? SessionKey, bool Moved)> FindPinnedAsync(AffinityTable affinity, PoolSnapshot snapshot, RoutingRequest request)
    {
        if (affinity.Cookie is { } cookie)
        {
            // A missing or tampered cookie is simply no session: the request is balanced as usual.
            return (request.Http!.Request.Cookies.TryGetValue(affinity.Settings.CookieName, out var value)
                ? snapshot.FindForSession(cookie.Verify(value))
                : null, null, false);
        }
        var sessionKey = AffinityTable.KeyFor(affinity.Settings, request);
        if (sessionKey is null)
        {
            return (null, null, false);
        }
        var pinnedName = await affinity.FindAsync(sessionKey);
        if (ReferenceEquals(pinnedName, AffinityTable.Unavailable))
        {
            return (null, null, false);
        }
        var pinned = snapshot.FindForSession(pinnedName);
        // A session whose backend went away moves to the same new backend whichever node sees it
        // first, so nodes re-pinning it at the same moment agree instead of racing.
        return pinned is not null || pinnedName is null
            ? (pinned, sessionKey, false)
            : (snapshot.RendezvousFor(sessionKey), sessionKey, true);
    }

    /// <summary>Pins a new (or moved) session to <paramref name="backend"/> before its first response.</summary>
    private static async Task PinAsync(AffinityTable affinity, HttpContext context, string? sessionKey, Backend backend)
    {
        switch (affinity.Settings.Mode)
        {
            case AffinityMode.Cookie:
                if (affinity.Cookie!.Issue(backend.Name) is not { } value)
                {
                    // No key yet (the cluster's generated key has not arrived): balanced, not pinned.
                    break;
                }
                var ttl = affinity.Settings.Ttl;
                context.Response.OnStarting(() =>
                {
                    context.Response.Cookies.Append(affinity.Settings.CookieName, value, new CookieOptions
                    {
                        HttpOnly = true,
                        Path = "/",
                        SameSite = SameSiteMode.Lax,
                        MaxAge = ttl,
                        Secure = context.Request.IsHttps,
                    });
                    return Task.CompletedTask;
                });
                break;
            case AffinityMode.LearnCookie:
                // The session id is the backend's own cookie: learn it from the response that sets it.
                context.Response.OnStarting(() =>
                {
                    var learned = LearnedSession(context.Response.Headers.SetCookie, affinity.Settings.KeyName);
                    return learned is null ? Task.CompletedTask : PinOrLogAsync(affinity, learned, backend);
                });
                if (sessionKey is not null)
                {
                    await PinOrLogAsync(affinity, sessionKey, backend);
                }
                break;
            default:
                if (sessionKey is not null)
                {
                    await PinOrLogAsync(affinity, sessionKey, backend);
                }
                break;
        }
    }

    private static async Task PinOrLogAsync(AffinityTable affinity, string key, Backend backend)
    {
        try
        {
            await affinity.Pin(key, backend.Name).WaitAsync(affinity.WriteTimeout);
        }
        catch (Exception e) when (e is TimeoutException)
        {
            // The session is pinned here and spreads by gossip; the client is not failed for it.
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
