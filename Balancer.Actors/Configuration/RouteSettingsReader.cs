using System.Collections.Immutable;
using System.Text.RegularExpressions;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Balancer.Configuration;

/// <summary>Reads and checks the <c>routes</c> of an HTTP frontend, including that each can be reached.</summary>
internal static class RouteSettingsReader
{
    /// <summary>How regular expressions in routes are compiled: no backtracking, so no path or header can make matching slow.</summary>
    internal const RegexOptions RegexOptions = System.Text.RegularExpressions.RegexOptions.NonBacktracking | System.Text.RegularExpressions.RegexOptions.CultureInvariant;

    internal static ImmutableArray<RouteSettings> ReadRoutes(SettingsReader frontend, FrontendMode mode, Config routeDefaults, ImmutableArray<PoolSettings>.Builder pools)
    {
        var value = frontend.Value("routes");
        if (value is null)
        {
            return ImmutableArray<RouteSettings>.Empty;
        }
        if (!value.IsArray())
        {
            if (!value.IsString() && !(value.IsObject() && value.GetObject().Items.Count > 0))
            {
                // The parser reports an empty list as neither a list nor a string.
                return ImmutableArray<RouteSettings>.Empty;
            }
            frontend.Problem("routes", "expected a list of routes: [ { pool = NAME, hosts = [...], path-prefix = \"/...\" } ]");
            return ImmutableArray<RouteSettings>.Empty;
        }
        var items = value.GetArray();
        if (items.Count > 0 && mode == FrontendMode.Tcp)
        {
            frontend.Problem("routes", "routes are for http frontends (a tcp frontend routes by SNI with sni-routes)");
            return ImmutableArray<RouteSettings>.Empty;
        }
        var routes = ImmutableArray.CreateBuilder<RouteSettings>();
        var positions = new List<int>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var index = 0; index < items.Count; index++)
        {
            var key = $"routes[{index}]";
            if (!items[index].IsObject())
            {
                frontend.Problem(key, "expected a route { pool = NAME, ... }");
                continue;
            }
            var user = new Config(new HoconRoot(items[index]));
            var section = new SettingsReader(user, routeDefaults, frontend.PathOf(key), frontend.ProblemList);
            section.RejectUnknownKeys(SettingsReader.KeysOf(routeDefaults), user);
            var problemsBefore = frontend.ProblemList.Count;
            var route = ReadRoute(section, index, pools);
            if (route is null || frontend.ProblemList.Count > problemsBefore)
            {
                // A route with a mistake is reported as such, not as shadowing the ones after it.
                continue;
            }
            if (!names.Add(route.Name))
            {
                section.Problem("name", $"another route of this frontend is named \"{route.Name}\"");
                continue;
            }
            routes.Add(route);
            positions.Add(index);
        }
        var read = routes.ToImmutable();
        for (var later = 1; later < read.Length; later++)
        {
            for (var earlier = 0; earlier < later; earlier++)
            {
                if (Covers(read[earlier], read[later]))
                {
                    frontend.Problem($"routes[{positions[later]}]",
                        $"route \"{read[later].Name}\" is never matched: route \"{read[earlier].Name}\" before it matches every request it would");
                    break;
                }
            }
        }
        return read;
    }

    private static RouteSettings? ReadRoute(SettingsReader section, int index, ImmutableArray<PoolSettings>.Builder pools)
    {
        var name = section.String("name");
        if (name.Length == 0)
        {
            name = $"routes[{index}]";
        }
        else if (!BackendRules.IsValidName(name))
        {
            section.Problem("name", $"a route name uses {BackendRules.NameRule}");
        }

        var hosts = ImmutableArray.CreateBuilder<string>();
        foreach (var written in section.StringList("hosts"))
        {
            // "example.com." is the same name as "example.com"; requests are matched without the dot.
            var host = written.EndsWith('.') ? written[..^1] : written;
            var bare = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
            if (bare.Length == 0 || bare.Contains('*') || bare.Contains(':') || Uri.CheckHostName(bare) is UriHostNameType.Unknown)
            {
                section.Problem("hosts", $"expected host names such as api.example.com or *.example.com (no port), got \"{host}\"");
                continue;
            }
            hosts.Add(host.ToLowerInvariant());
        }

        PathMatch? path = null;
        var given = new List<(string Key, PathMatchKind Kind, string Value)>();
        foreach (var (key, kind) in new[] { ("path-prefix", PathMatchKind.Prefix), ("path", PathMatchKind.Exact), ("path-regex", PathMatchKind.Regex) })
        {
            var text = section.String(key);
            if (text.Length > 0)
            {
                given.Add((key, kind, text));
            }
        }
        if (given.Count > 1)
        {
            section.Problem(given[1].Key, $"a route takes one path condition, and {given[0].Key} is set");
        }
        else if (given.Count == 1)
        {
            var (key, kind, text) = given[0];
            if (kind != PathMatchKind.Regex && !text.StartsWith('/'))
            {
                section.Problem(key, $"expected a path starting with /, got \"{text}\"");
            }
            else if (kind != PathMatchKind.Regex || IsRegex(section, key, text))
            {
                path = new PathMatch(kind, text);
            }
        }

        var methods = ImmutableArray.CreateBuilder<string>();
        foreach (var method in section.StringList("methods"))
        {
            if (method.Length == 0 || method.Any(c => c is < 'A' or > 'Z'))
            {
                section.Problem("methods", $"expected methods in capitals such as GET, got \"{method}\"");
                continue;
            }
            methods.Add(method);
        }

        var headers = ImmutableArray.CreateBuilder<HeaderMatch>();
        foreach (var text in section.StringList("headers"))
        {
            var equals = text.IndexOf('=');
            var headerName = (equals < 0 ? text : text[..equals]).Trim();
            if (!IsToken(headerName))
            {
                section.Problem("headers", $"expected \"NAME\", \"NAME=VALUE\" or \"NAME=~REGEX\", got \"{text}\"");
                continue;
            }
            if (equals < 0)
            {
                headers.Add(new HeaderMatch(headerName, HeaderMatchKind.Present, ""));
            }
            else if (text.AsSpan(equals + 1).StartsWith("~"))
            {
                var pattern = text[(equals + 2)..].Trim();
                if (IsRegex(section, "headers", pattern))
                {
                    headers.Add(new HeaderMatch(headerName, HeaderMatchKind.Regex, pattern));
                }
            }
            else
            {
                // Kestrel strips the spaces around a header's value; so does the condition.
                headers.Add(new HeaderMatch(headerName, HeaderMatchKind.Equals, text[(equals + 1)..].Trim()));
            }
        }

        var pool = FrontendSettingsReader.ReadPoolName(section, pools);

        string? rewrite = null;
        var rewriteText = section.String("rewrite-prefix");
        if (rewriteText != "off")
        {
            if (path?.Kind != PathMatchKind.Prefix)
            {
                section.Problem("rewrite-prefix", "replaces the matched path-prefix: set path-prefix as well");
            }
            else if (rewriteText.Length > 0 && !rewriteText.StartsWith('/'))
            {
                section.Problem("rewrite-prefix", $"expected a path starting with / (or \"\" to strip the prefix), got \"{rewriteText}\"");
            }
            else
            {
                rewrite = rewriteText == "/" ? "" : rewriteText;
            }
        }

        TimeSpan? timeout = section.Value("request-timeout") is { } timeoutValue && timeoutValue.IsString() && timeoutValue.GetString() == "pool"
            ? null
            : section.Duration("request-timeout");

        return new RouteSettings(name, hosts.ToImmutable(), path, methods.ToImmutable(), headers.ToImmutable(), pool,
            ReadHeaderChanges(section.Section("request-headers")),
            ReadHeaderChanges(section.Section("response-headers")),
            rewrite, timeout);
    }

    private static HeaderChanges ReadHeaderChanges(SettingsReader section)
    {
        var set = ImmutableArray.CreateBuilder<KeyValuePair<string, string>>();
        foreach (var name in section.ObjectKeys("set"))
        {
            var value = section.Section("set").Value(name);
            if (!IsToken(name) || value is null || !value.IsString())
            {
                section.Problem("set", $"expected {{ NAME = VALUE }} with header names, got \"{name}\"");
                continue;
            }
            var text = value.GetString() ?? "";
            if (text.Any(c => c is '\r' or '\n' or '\0'))
            {
                section.Problem("set", $"the value of {name} holds a line break or NUL");
                continue;
            }
            if (text.Any(c => c is < ' ' or > '~' && c != '\t'))
            {
                section.Problem("set", $"the value of {name} holds a character that is not visible ASCII");
                continue;
            }
            if (IsHopHeader(name))
            {
                section.Problem("set", $"{name} frames the message or describes one connection; Balancer sets it for each hop");
                continue;
            }
            set.Add(new KeyValuePair<string, string>(name, text));
        }
        var remove = ImmutableArray.CreateBuilder<string>();
        foreach (var name in section.StringList("remove"))
        {
            if (!IsToken(name))
            {
                section.Problem("remove", $"expected header names, got \"{name}\"");
                continue;
            }
            if (IsHopHeader(name) || name.Equals("Host", StringComparison.OrdinalIgnoreCase))
            {
                section.Problem("remove", $"{name} frames the message or describes one connection; Balancer sets it for each hop");
                continue;
            }
            remove.Add(name);
        }
        return set.Count == 0 && remove.Count == 0 ? HeaderChanges.None : new HeaderChanges(set.ToImmutable(), remove.ToImmutable());
    }

    /// <summary>Headers a route may not change: how a message is framed, and what is about one connection.</summary>
    private static bool IsHopHeader(string name) => name.ToLowerInvariant() is
        "content-length" or "transfer-encoding" or "te" or "trailer" or "connection" or "keep-alive" or "upgrade" or "expect" or "proxy-connection";

    private static bool IsRegex(SettingsReader section, string key, string pattern)
    {
        try
        {
            _ = new Regex(pattern, RegexOptions);
            return true;
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            section.Problem(key, $"bad regular expression \"{pattern}\": {e.Message}");
            return false;
        }
    }

    /// <summary>An HTTP token (RFC 9110): what a header name may be.</summary>
    internal static bool IsToken(string text) => text.Length > 0 && text.All(c => c is > ' ' and < (char)127 && "\"(),/:;<=>?@[\\]{}".IndexOf(c) < 0);

    /// <summary>True when every request <paramref name="later"/> matches is matched by <paramref name="earlier"/> (so <paramref name="later"/> is never reached).</summary>
    internal static bool Covers(RouteSettings earlier, RouteSettings later) =>
        CoversHosts(earlier.Hosts, later.Hosts)
        && CoversPath(earlier.Path, later.Path)
        && (earlier.Methods.IsEmpty || (!later.Methods.IsEmpty && later.Methods.All(earlier.Methods.Contains)))
        && earlier.Headers.All(condition => later.Headers.Any(other => string.Equals(other.Name, condition.Name, StringComparison.OrdinalIgnoreCase)
            && (condition.Kind == HeaderMatchKind.Present || (other.Kind == condition.Kind && other.Value == condition.Value))));

    private static bool CoversHosts(ImmutableArray<string> earlier, ImmutableArray<string> later)
    {
        if (earlier.IsEmpty)
        {
            return true;
        }
        return !later.IsEmpty && later.All(host => earlier.Any(pattern => HostPatternCovers(pattern, host)));
    }

    private static bool HostPatternCovers(string pattern, string host)
    {
        if (pattern == host)
        {
            return true;
        }
        if (!pattern.StartsWith("*.", StringComparison.Ordinal))
        {
            return false;
        }
        var suffix = pattern[1..];
        var name = host.StartsWith("*.", StringComparison.Ordinal) ? host[1..] : "." + host;
        // "*.example.com" covers "a.example.com" and "*.a.example.com" (one label or more before the suffix).
        return name.Length > suffix.Length && name.EndsWith(suffix, StringComparison.Ordinal) || (host.StartsWith("*.", StringComparison.Ordinal) && name == suffix);
    }

    private static bool CoversPath(PathMatch? earlier, PathMatch? later) => earlier switch
    {
        null => true,
        { Kind: PathMatchKind.Prefix } => later is { Kind: PathMatchKind.Prefix or PathMatchKind.Exact } && later.Value.StartsWith(earlier.Value, StringComparison.Ordinal),
        _ => later is not null && later.Kind == earlier.Kind && later.Value == earlier.Value,
    };
}
