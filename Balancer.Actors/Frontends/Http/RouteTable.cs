using System.Collections.Frozen;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>
/// An HTTP frontend's routes, compiled for matching without allocating: the routes that can match
/// a host are listed per host name (and per wildcard suffix) in their configured order, so a
/// request is checked against those only; the first whose path, method and header conditions hold
/// wins, and a request none matches takes <see cref="Default"/> (the frontend's pool).
/// </summary>
internal sealed class RouteTable
{
    private readonly FrozenDictionary<string, Route[]> _byHost;
    private readonly FrozenDictionary<string, Route[]>.AlternateLookup<ReadOnlySpan<char>> _byHostSpan;
    private readonly FrozenDictionary<string, Route[]> _bySuffix;
    private readonly FrozenDictionary<string, Route[]>.AlternateLookup<ReadOnlySpan<char>> _bySuffixSpan;
    private readonly Route[] _anyHost;
    private readonly bool _wildcards;

    public RouteTable(IReadOnlyList<Route> routes, Route defaultRoute)
    {
        Default = defaultRoute;
        Routes = routes;
        // Keys are lower case and compared ordinally (twice as fast as ignoring case); a request's
        // host is lower-cased first only when it has an upper-case letter.
        var exact = routes.SelectMany(r => r.Hosts).Where(h => !h.StartsWith("*.", StringComparison.Ordinal)).Select(h => h.ToLowerInvariant()).Distinct().ToList();
        // "*.example.com" is kept as ".example.com": a host matches it when it ends with that.
        var suffixes = routes.SelectMany(r => r.Hosts).Where(h => h.StartsWith("*.", StringComparison.Ordinal)).Select(h => h[1..].ToLowerInvariant()).Distinct().ToList();
        _anyHost = routes.Where(r => r.Hosts.Length == 0).ToArray();
        _byHost = exact.ToFrozenDictionary(h => h, h => routes.Where(r => r.Hosts.Length == 0 || r.MatchesHostName(h)).ToArray(), StringComparer.Ordinal);
        _bySuffix = suffixes.ToFrozenDictionary(
            s => s,
            s => routes.Where(r => r.Hosts.Length == 0 || r.Hosts.Any(h => h.StartsWith("*.", StringComparison.Ordinal) && s.EndsWith(h[1..], StringComparison.OrdinalIgnoreCase))).ToArray(),
            StringComparer.Ordinal);
        _byHostSpan = _byHost.GetAlternateLookup<ReadOnlySpan<char>>();
        _bySuffixSpan = _bySuffix.GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcards = suffixes.Count > 0;
    }

    /// <summary>
    /// Compiles <paramref name="frontend"/>'s routes over the pools' handles; <paramref name="defaultPool"/> takes what none matches.
    /// <paramref name="log"/> hears of a regular expression that had to leave the backtracking engine.
    /// </summary>
    public static RouteTable Build(FrontendSettings frontend, PoolRegistry pools, PoolHandle defaultPool, ILoggingAdapter? log = null) => new(
        frontend.Routes.Select(route => new Route(
            route,
            pools.Find(route.Pool) ?? throw new InvalidOperationException($"frontend {frontend.Name}: pool {route.Pool} of route {route.Name} is not registered"),
            new ForwardingTransformer(frontend, route),
            route.RequestTimeout,
            log)).ToList(),
        new Route(null, defaultPool, new ForwardingTransformer(frontend), null));

    /// <summary>The route of requests no route matches: the frontend's pool, unchanged.</summary>
    public Route Default { get; }

    /// <summary>The configured routes, in order.</summary>
    public IReadOnlyList<Route> Routes { get; }

    /// <summary>The first route that matches <paramref name="request"/>, else <see cref="Default"/>.</summary>
    public Route Match(HttpRequest request)
    {
        if (Routes.Count == 0)
        {
            return Default;
        }
        // The Host header as sent (HTTP/2's :authority arrives as Host too), without
        // HttpRequest.Host's parsing: only the name before the port is compared.
        var headers = request.Headers;
        string? host = headers.Host;
        // A Host without a port (the usual one) is looked up first as the string it is: the frozen
        // dictionary's string path is faster than cutting the port off and looking up a span.
        var candidates = host is not null && _byHost.TryGetValue(host, out var routes) ? routes : CandidatesFor(HostName(host));
        if (candidates.Length == 0)
        {
            return Default;
        }
        var path = request.Path.Value ?? "/";
        var method = request.Method;
        foreach (var route in candidates)
        {
            if (route.MatchesRest(headers, path, method))
            {
                return route;
            }
        }
        return Default;
    }

    /// <summary>The first route that matches a request of the HTTP/1.1 fast path, else <see cref="Default"/>.</summary>
    public Route Match(Http1Request request)
    {
        if (Routes.Count == 0)
        {
            return Default;
        }
        var hostBytes = request.Host;
        Span<char> host = hostBytes.Length <= MaxHostName ? stackalloc char[MaxHostName] : new char[hostBytes.Length];
        host = host[..System.Text.Encoding.ASCII.GetChars(hostBytes, host)];
        var candidates = CandidatesFor(HostName(host));
        if (candidates.Length == 0)
        {
            return Default;
        }
        foreach (var route in candidates)
        {
            if (route.MatchesRest(request))
            {
                return route;
            }
        }
        return Default;
    }

    // The longest name DNS allows: a longer Host (only a hostile client's) is lower-cased on the heap.
    private const int MaxHostName = 253;

    private Route[] CandidatesFor(ReadOnlySpan<char> host)
    {
        if (host.IsEmpty)
        {
            return _anyHost;
        }
        if (host.ContainsAnyInRange('A', 'Z'))
        {
            Span<char> lowered = host.Length <= MaxHostName ? stackalloc char[MaxHostName] : new char[host.Length];
            return CandidatesForLowerCase(lowered[..host.ToLowerInvariant(lowered)]);
        }
        return CandidatesForLowerCase(host);
    }

    private Route[] CandidatesForLowerCase(ReadOnlySpan<char> host)
    {
        if (_byHostSpan.TryGetValue(host, out var routes))
        {
            return routes;
        }
        if (_wildcards)
        {
            // The longest suffix first: "a.b.example.com" tries ".b.example.com", then ".example.com", then ".com".
            for (var dot = host.IndexOf('.'); dot >= 0; dot = host.Slice(dot + 1).IndexOf('.') is var next and >= 0 ? dot + 1 + next : -1)
            {
                if (_bySuffixSpan.TryGetValue(host[dot..], out routes))
                {
                    return routes;
                }
            }
        }
        return _anyHost;
    }

    /// <summary>The host name of a Host header, without its port (and without a final dot).</summary>
    internal static ReadOnlySpan<char> HostName(string? hostHeader) => HostName(hostHeader.AsSpan());

    private static ReadOnlySpan<char> HostName(ReadOnlySpan<char> host)
    {
        if (host.StartsWith('['))
        {
            var close = host.IndexOf(']');
            return close < 0 ? host : host[..(close + 1)];
        }
        var colon = host.LastIndexOf(':');
        if (colon >= 0)
        {
            host = host[..colon];
        }
        return host.EndsWith('.') ? host[..^1] : host;
    }
}

/// <summary>One compiled route: its conditions, and where and how it forwards.</summary>
internal sealed class Route
{
    private readonly PathMatchKind _pathKind;
    private readonly string? _path;
    private readonly RouteRegex? _pathRegex;
    private readonly string[] _methods;
    private readonly (string Name, HeaderMatchKind Kind, string Value, RouteRegex? Regex)[] _headers;

    public Route(RouteSettings? settings, PoolHandle pool, HttpTransformer transformer, TimeSpan? requestTimeout, ILoggingAdapter? log = null)
    {
        Name = settings?.Name ?? "";
        Pool = pool;
        Transformer = transformer;
        RequestTimeout = requestTimeout;
        Hosts = settings?.Hosts.ToArray() ?? [];
        _methods = settings?.Methods.ToArray() ?? [];
        if (settings?.Path is { } path)
        {
            _pathKind = path.Kind;
            _path = path.Value;
            _pathRegex = path.Kind == PathMatchKind.Regex ? new RouteRegex(path.Value, $"route {Name}: path-regex", log) : null;
        }
        _headers = settings?.Headers.Select(h => (h.Name, h.Kind, h.Value, h.Kind == HeaderMatchKind.Regex ? new RouteRegex(h.Value, $"route {Name}: header {h.Name} regex", log) : null)).ToArray() ?? [];
    }

    /// <summary>The route's name; "" for the frontend's default.</summary>
    public string Name { get; }

    /// <summary>The pool it sends to.</summary>
    public PoolHandle Pool { get; }

    /// <summary>What it changes in the request and response (forwarding headers included).</summary>
    public HttpTransformer Transformer { get; }

    /// <summary>The route's own request timeout, or null for the pool's.</summary>
    public TimeSpan? RequestTimeout { get; }

    /// <summary>Host names ("*.x" for a suffix), lower case; empty: any.</summary>
    public string[] Hosts { get; }

    /// <summary>True when <paramref name="host"/> (without port) is one of <see cref="Hosts"/> or below one of its wildcards.</summary>
    public bool MatchesHostName(string host)
    {
        foreach (var pattern in Hosts)
        {
            if (pattern.StartsWith("*.", StringComparison.Ordinal)
                ? host.Length > pattern.Length - 1 && host.EndsWith(pattern.AsSpan(1), StringComparison.OrdinalIgnoreCase)
                : string.Equals(pattern, host, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The conditions besides the host (which the table has already matched).</summary>
    public bool MatchesRest(IHeaderDictionary headers, string path, string method)
    {
        if (!MatchesPathAndMethod(path, method))
        {
            return false;
        }
        foreach (var (name, kind, value, regex) in _headers)
        {
            if (!headers.TryGetValue(name, out var values) || !Holds(values, kind, value, regex))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The same for a request of the HTTP/1.1 fast path.</summary>
    public bool MatchesRest(Http1Request request)
    {
        if ((_path is not null || _methods.Length > 0) && !MatchesPathAndMethod(request.Path, request.Method))
        {
            return false;
        }
        foreach (var condition in _headers)
        {
            var holds = condition.Kind == HeaderMatchKind.Present
                ? request.Has(condition.Name)
                : request.AnyValue(condition.Name, condition, static (value, c) =>
                    c.Kind == HeaderMatchKind.Equals ? string.Equals(value, c.Value, StringComparison.Ordinal) : c.Regex!.IsMatch(value));
            if (!holds)
            {
                return false;
            }
        }
        return true;
    }

    private bool MatchesPathAndMethod(string path, string method)
    {
        if (_path is not null)
        {
            var matches = _pathKind switch
            {
                PathMatchKind.Prefix => path.StartsWith(_path, StringComparison.Ordinal),
                PathMatchKind.Exact => string.Equals(path, _path, StringComparison.Ordinal),
                _ => _pathRegex!.IsMatch(path),
            };
            if (!matches)
            {
                return false;
            }
        }
        return _methods.Length == 0 || Array.IndexOf(_methods, method) >= 0;
    }

    private static bool Holds(StringValues values, HeaderMatchKind kind, string expected, RouteRegex? regex)
    {
        if (kind == HeaderMatchKind.Present)
        {
            return true;
        }
        if (values.Count == 1)
        {
            var single = values[0];
            return single is not null && (kind == HeaderMatchKind.Equals ? string.Equals(single, expected, StringComparison.Ordinal) : regex!.IsMatch(single));
        }
        foreach (var value in values)
        {
            if (value is not null && (kind == HeaderMatchKind.Equals ? string.Equals(value, expected, StringComparison.Ordinal) : regex!.IsMatch(value)))
            {
                return true;
            }
        }
        return false;
    }

    public override string ToString() => Name.Length == 0 ? $"default → {Pool.Name}" : $"{Name} → {Pool.Name}";
}
