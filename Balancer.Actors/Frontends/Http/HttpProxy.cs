using System.Net.Http;
using System.Text;
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
    private readonly IHttpForwarder _forwarder;
    private readonly HttpTransformer _transformer;
    private RequestConfigForTimeout _requestConfig = new(TimeSpan.Zero, ForwarderRequestConfig.Empty);

    public HttpProxy(FrontendSettings frontend, PoolHandle pool, IHttpForwarder forwarder)
    {
        _pool = pool;
        _forwarder = forwarder;
        _transformer = new ForwardingTransformer(frontend);
    }

    public async Task ForwardAsync(HttpContext context)
    {
        var snapshot = _pool.Snapshot;
        var requestConfig = RequestConfigFor(snapshot.Settings);
        var request = new RoutingRequest(context.Connection.RemoteIpAddress, context);
        var attempted = new AttemptedBackends();
        var attemptsAllowed = 1 + snapshot.Settings.Retries;
        while (true)
        {
            var backend = snapshot.Select(in request, ref attempted);
            if (backend is null)
            {
                await WriteErrorAsync(context, snapshot, attempted.Count == 0);
                return;
            }

            backend.Counters.Start();
            var error = await _forwarder.SendAsync(context, backend.DestinationPrefix, _pool.HttpClient, requestConfig, _transformer);
            if (error == ForwarderError.None)
            {
                backend.Counters.Finish(success: context.Response.StatusCode < 500 || !snapshot.Settings.Passive.Count5xx);
                return;
            }

            var errorFeature = context.Features.Get<IForwarderErrorFeature>();
            if (IsConnectFailure(error, errorFeature?.Exception))
            {
                backend.Counters.ConnectFailed();
                if (!context.Response.HasStarted && attempted.Count < attemptsAllowed && !context.RequestAborted.IsCancellationRequested)
                {
                    // Nothing reached the backend and nothing reached the client: try the next backend.
                    context.Features.Set<IForwarderErrorFeature>(null);
                    context.Response.StatusCode = StatusCodes.Status200OK;
                    continue;
                }
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
