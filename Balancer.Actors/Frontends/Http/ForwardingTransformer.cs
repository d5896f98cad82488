using Balancer.Configuration;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>
/// Copies the request as YARP does, then keeps the client's Host (as HAProxy does) and adds the
/// X-Forwarded-For/Proto/Host headers backends use to see the real client.
/// </summary>
internal sealed class ForwardingTransformer : HttpTransformer
{
    private const string ForwardedFor = "X-Forwarded-For";
    private const string ForwardedProto = "X-Forwarded-Proto";
    private const string ForwardedHost = "X-Forwarded-Host";

    private readonly bool _preserveHost;
    private readonly bool _forwardedHeaders;

    public ForwardingTransformer(FrontendSettings settings)
    {
        _preserveHost = settings.PreserveHost;
        _forwardedHeaders = settings.ForwardedHeaders;
    }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var request = httpContext.Request;
        if (_preserveHost && request.Host.HasValue)
        {
            proxyRequest.Headers.Host = request.Host.Value;
        }
        if (!_forwardedHeaders)
        {
            return;
        }
        var client = httpContext.Connection.RemoteIpAddress?.ToString();
        if (client is not null)
        {
            // Append to what earlier proxies wrote, so the backend sees the whole chain.
            var existing = request.Headers[ForwardedFor];
            proxyRequest.Headers.Remove(ForwardedFor);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedFor, existing.Count == 0 ? client : $"{existing}, {client}");
        }
        proxyRequest.Headers.Remove(ForwardedProto);
        proxyRequest.Headers.TryAddWithoutValidation(ForwardedProto, request.Scheme);
        if (request.Host.HasValue)
        {
            proxyRequest.Headers.Remove(ForwardedHost);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedHost, request.Host.Value);
        }
    }
}
