using System.Net;
using Balancer.Configuration;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>
/// Copies the request as YARP does, then keeps the client's Host (as HAProxy does) and tells the
/// backend who the client is (<c>forwarded-headers</c>): X-Forwarded-For gets the client's address,
/// X-Forwarded-Proto and X-Forwarded-Host are set. Forwarding headers that arrived with the request
/// are kept only from a trusted proxy (<c>trusted-proxies</c>, append mode); from anyone else they
/// are removed, so a client cannot choose the address a backend logs or rate-limits by.
/// </summary>
internal sealed class ForwardingTransformer : HttpTransformer
{
    private const string ForwardedFor = "X-Forwarded-For";
    private const string ForwardedProto = "X-Forwarded-Proto";
    private const string ForwardedHost = "X-Forwarded-Host";

    /// <summary>Every header by which a hop tells the next one about the client.</summary>
    private static readonly string[] ForwardingHeaders = [ForwardedFor, ForwardedProto, ForwardedHost, "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded", "X-Real-IP"];

    private readonly bool _preserveHost;
    private readonly ForwardedHeadersMode _mode;
    private readonly IPNetwork[] _trustedProxies;

    public ForwardingTransformer(FrontendSettings settings)
    {
        _preserveHost = settings.PreserveHost;
        _mode = settings.ForwardedHeaders;
        _trustedProxies = settings.TrustedProxies.ToArray();
    }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var request = httpContext.Request;
        if (System.Diagnostics.Activity.Current is { } span && ReferenceEquals(span.Source, Telemetry.BalancerTracing.Source))
        {
            // The backend continues the trace from the balancer's span, not from the client's.
            proxyRequest.Headers.Remove("traceparent");
            proxyRequest.Headers.Remove("tracestate");
            proxyRequest.Headers.TryAddWithoutValidation("traceparent", span.Id);
            if (span.TraceStateString is { Length: > 0 } state)
            {
                proxyRequest.Headers.TryAddWithoutValidation("tracestate", state);
            }
        }
        if (_preserveHost && request.Host.HasValue)
        {
            proxyRequest.Headers.Host = request.Host.Value;
        }
        if (_mode == ForwardedHeadersMode.Off)
        {
            return;
        }
        var peer = httpContext.Connection.RemoteIpAddress;
        var trusted = _mode == ForwardedHeadersMode.Append && peer is not null && IsTrusted(peer);
        if (!trusted)
        {
            foreach (var header in ForwardingHeaders)
            {
                proxyRequest.Headers.Remove(header);
            }
        }
        if (peer is not null)
        {
            var client = (peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer).ToString();
            // From a trusted proxy, append to the chain it wrote, so the backend sees every hop.
            var existing = trusted ? request.Headers[ForwardedFor] : default;
            proxyRequest.Headers.Remove(ForwardedFor);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedFor, existing.Count == 0 ? client : $"{existing}, {client}");
        }
        if (!trusted || !request.Headers.ContainsKey(ForwardedProto))
        {
            proxyRequest.Headers.Remove(ForwardedProto);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedProto, request.Scheme);
        }
        if (request.Host.HasValue && (!trusted || !request.Headers.ContainsKey(ForwardedHost)))
        {
            proxyRequest.Headers.Remove(ForwardedHost);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedHost, request.Host.Value);
        }
    }

    private bool IsTrusted(IPAddress peer)
    {
        var address = peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer;
        foreach (var network in _trustedProxies)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }
        return false;
    }
}
