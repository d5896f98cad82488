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
/// are removed, so a client cannot choose the address a backend logs or rate-limits by. A route
/// adds its own changes: headers set and removed both ways, and the matched path prefix rewritten.
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

    private readonly HeaderChanges _requestHeaders;
    private readonly HeaderChanges _responseHeaders;
    private readonly string? _matchedPrefix;
    private readonly string? _rewritePrefix;

    public ForwardingTransformer(FrontendSettings settings, RouteSettings? route = null)
    {
        _preserveHost = settings.PreserveHost;
        _mode = settings.ForwardedHeaders;
        _trustedProxies = settings.TrustedProxies.ToArray();
        _requestHeaders = route?.RequestHeaders ?? HeaderChanges.None;
        _responseHeaders = route?.ResponseHeaders ?? HeaderChanges.None;
        if (route is { RewritePrefix: { } rewrite, Path: { Kind: PathMatchKind.Prefix } prefix })
        {
            _matchedPrefix = prefix.Value;
            // "/v1/" replaced by "" must leave "/users", not "users".
            _rewritePrefix = prefix.Value.EndsWith('/') && !rewrite.EndsWith('/') ? rewrite + "/" : rewrite;
        }
    }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var request = httpContext.Request;
        if (Rewrite(request.Path.Value) is { } rewritten)
        {
            proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, new PathString(rewritten), request.QueryString);
        }
        RemoveConnectionOptions(request, proxyRequest);
        AddForwarding(httpContext, request, proxyRequest);
        if (!_requestHeaders.IsEmpty)
        {
            // Last: what the route's configuration says wins over what forwarding would set.
            ApplyRequestHeaders(proxyRequest);
        }
    }

    /// <summary>
    /// Drops the headers the client's Connection header names (RFC 9110 7.6.1: they are about the
    /// client's hop only, as Keep-Alive is); YARP drops only the standard hop-by-hop ones. Upgrade
    /// stays: YARP carries a WebSocket handshake through itself.
    /// </summary>
    private static void RemoveConnectionOptions(HttpRequest request, HttpRequestMessage proxyRequest)
    {
        foreach (var value in request.Headers.Connection)
        {
            if (value is null)
            {
                continue;
            }
            foreach (var range in value.AsSpan().Split(','))
            {
                var option = value.AsSpan()[range].Trim();
                if (option.IsEmpty || option.Equals("keep-alive", StringComparison.OrdinalIgnoreCase) || option.Equals("close", StringComparison.OrdinalIgnoreCase)
                    || option.Equals("upgrade", StringComparison.OrdinalIgnoreCase)
                    // A client does not get to take the body's length or the Host off a request.
                    || option.Equals("content-length", StringComparison.OrdinalIgnoreCase) || option.Equals("host", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }
                var name = option.ToString();
                proxyRequest.Headers.Remove(name);
                proxyRequest.Content?.Headers.Remove(name);
            }
        }
    }

    /// <summary>True when the route rewrites a path prefix: without it, nobody needs the request's path as a string.</summary>
    internal bool RewritesPath => _matchedPrefix is not null;

    /// <summary>The path the backend gets when the route rewrites <paramref name="path"/>'s prefix; null when it does not.</summary>
    internal string? Rewrite(string? path)
    {
        if (_matchedPrefix is null || path is null || !path.StartsWith(_matchedPrefix, StringComparison.Ordinal))
        {
            return null;
        }
        var rest = path.AsSpan(_matchedPrefix.Length);
        // "/api" rewritten to "/svc/" must leave "/svc/users" of "/api/users", not "/svc//users".
        var rewritten = _rewritePrefix!.EndsWith('/') && rest.StartsWith('/') ? string.Concat(_rewritePrefix, rest[1..]) : string.Concat(_rewritePrefix, rest);
        return rewritten.StartsWith('/') ? rewritten : "/" + rewritten;
    }

    /// <summary>The client's Host goes to the backend (<c>preserve-host</c>).</summary>
    internal bool PreserveHost => _preserveHost;

    /// <summary>What the frontend does with forwarding headers (<c>forwarded-headers</c>).</summary>
    internal ForwardedHeadersMode Mode => _mode;

    /// <summary>The route's changes to request headers.</summary>
    internal HeaderChanges RequestHeaders => _requestHeaders;

    /// <summary>The route's changes to response headers.</summary>
    internal HeaderChanges ResponseHeaders => _responseHeaders;

    private void AddForwarding(HttpContext httpContext, HttpRequest request, HttpRequestMessage proxyRequest)
    {
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

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var copyBody = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not null && httpContext.Features.Get<RetryableResponse>() is { } retryable && retryable.Discards((int)proxyResponse.StatusCode))
        {
            // A status the pool retries: the response goes nowhere, and the next backend answers.
            httpContext.Response.Headers.Clear();
            return false;
        }
        if (!_responseHeaders.IsEmpty)
        {
            var headers = httpContext.Response.Headers;
            foreach (var name in _responseHeaders.Remove)
            {
                headers.Remove(name);
            }
            foreach (var (name, value) in _responseHeaders.Set)
            {
                headers[name] = value;
            }
        }
        return copyBody;
    }

    private void ApplyRequestHeaders(HttpRequestMessage proxyRequest)
    {
        foreach (var name in _requestHeaders.Remove)
        {
            proxyRequest.Headers.Remove(name);
            proxyRequest.Content?.Headers.Remove(name);
        }
        foreach (var (name, value) in _requestHeaders.Set)
        {
            proxyRequest.Headers.Remove(name);
            if (!proxyRequest.Headers.TryAddWithoutValidation(name, value) && proxyRequest.Content is { } content)
            {
                // A content header (Content-Type, ...) lives on the content.
                content.Headers.Remove(name);
                content.Headers.TryAddWithoutValidation(name, value);
            }
        }
    }

    /// <summary>True when <paramref name="peer"/> is one of <c>trusted-proxies</c>.</summary>
    internal bool IsTrusted(IPAddress peer)
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
