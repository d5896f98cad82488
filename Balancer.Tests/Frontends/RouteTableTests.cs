using System.Diagnostics;
using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Frontends.Http;
using Balancer.Routing;
using Balancer.Tests.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Balancer.Tests.Frontends;

/// <summary>
/// How a frontend's compiled route table reads a request: the host as clients write it (any case,
/// a port, a final dot, too long to be a name), and regular expressions on both engines.
/// </summary>
public class RouteTableTests
{
    [Theory]
    [InlineData("^/items/[0-9]+/r22$", "/items/", "/r22")]
    [InlineData("^/api/v1", "/api/v1", "")]
    [InlineData("^/ab?c$", "/a", "c")]
    [InlineData("^/a+", "/", "")]
    [InlineData("^/x{2}/", "/", "")]
    [InlineData("^abc$", "abc", "abc")]
    [InlineData("/edit$", "", "/edit")]
    [InlineData("^/v[12]/.*\\.json$", "/v", "json")]
    [InlineData("^/a\\.b", "/a", "")]
    [InlineData("\\d$", "", "")]
    [InlineData("\\\\d$", "", "d")]
    [InlineData("abc\\$", "", "")]
    [InlineData("^/a|^/b", "", "")]
    [InlineData("^/a(?i)bc$", "", "")]
    [InlineData("^(/a)$", "", "")]
    [InlineData("/\\x41b$", "", "b")]
    [InlineData("/\\u00e9$", "", "")]
    [InlineData("/\\101$", "", "")]
    [InlineData("/\\cJ$", "", "")]
    [InlineData("^/a\\.json$", "/a", "json")]
    public void AnchoredLiterals_OnlyTextEveryMatchMustStartOrEndWith(string pattern, string prefix, string suffix)
    {
        Assert.Equal((prefix, suffix), RouteRegex.AnchoredLiterals(pattern));
    }

    [Theory]
    [InlineData("^/items/[0-9]+/r22$", "/items/7/r22", true)]
    [InlineData("^/items/[0-9]+/r22$", "/items/7/r22\n", true)]
    [InlineData("^/items/[0-9]+/r22$", "/items/7/r2", false)]
    [InlineData("^/items/[0-9]+/r22$", "/items/x/r22", false)]
    [InlineData("^/ab?c$", "/ac", true)]
    [InlineData("^/ab?c$", "/abbc", false)]
    [InlineData("/edit$", "/a/b/edit", true)]
    [InlineData("^/a|^/b", "/b/1", true)]
    [InlineData("/\\x41b$", "/Ab", true)]
    [InlineData("/\\u00e9$", "/\u00e9", true)]
    [InlineData("/\\101$", "/A", true)]
    [InlineData("/\\cJ$", "/\n", true)]
    public void IsMatch_AgreesWithTheRegexItself(string pattern, string input, bool expected)
    {
        Assert.Equal(expected, System.Text.RegularExpressions.Regex.IsMatch(input, pattern, RouteSettingsReader.RegexOptions));
        Assert.Equal(expected, new RouteRegex(pattern, "test", null).IsMatch(input));
    }

    [Fact]
    public void APatternThatBacktracksBadly_LeavesTheBacktrackingEngineOnItsFirstHostileInput_AndStillMatches()
    {
        var regex = new RouteRegex("^/(a+)+$", "route r: path-regex", null);
        Assert.True(regex.IsMatch("/aaaa"));
        Assert.False(regex.Safe);

        // 2^40 ways to split the a's before the "!" fails them all: hours on a backtracking engine.
        var watch = Stopwatch.StartNew();
        Assert.False(regex.IsMatch("/" + new string('a', 40) + "!"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"took {watch.Elapsed}");
        Assert.True(regex.Safe);

        watch.Restart();
        Assert.False(regex.IsMatch("/" + new string('a', 5000) + "!"));
        Assert.True(regex.IsMatch("/" + new string('a', 5000)));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"took {watch.Elapsed}");
    }

    [Theory]
    [InlineData("api.example.com", "api")]
    [InlineData("API.Example.COM", "api")]
    [InlineData("api.example.com:8080", "api")]
    [InlineData("API.EXAMPLE.COM:8080", "api")]
    [InlineData("api.example.com.", "api")]
    [InlineData("shop.eu.example.com", "wildcard")]
    [InlineData("Shop.EU.Example.com", "wildcard")]
    [InlineData("example.com", "")]
    [InlineData("other.org", "")]
    [InlineData("", "")]
    [InlineData("[::1]:8080", "")]
    public void Host_MatchedInAnyCase_WithOrWithoutPortOrFinalDot(string host, string route)
    {
        var table = Table("""
            { name = api, hosts = ["api.example.com"], pool = b }
            { name = wildcard, hosts = ["*.example.com"], pool = b }
            """);
        Assert.Equal(route, table.Match(Request(host, "/")).Name);
    }

    [Fact]
    public void AHostLongerThanAnyName_InAnyCase_IsMatchedAsAnyOther()
    {
        var table = Table("""
            { name = wildcard, hosts = ["*.example.com"], pool = b }
            { name = any, path-prefix = "/", pool = b }
            """);
        Assert.Equal("wildcard", table.Match(Request(new string('A', 300) + ".example.com", "/")).Name);
        Assert.Equal("wildcard", table.Match(Request(new string('a', 200) + ".Example.com", "/")).Name);
        Assert.Equal("any", table.Match(Request(new string('A', 300) + ".example.org", "/")).Name);
    }

    private static RouteTable Table(string routes)
    {
        var settings = BalancerSettings.Create(ConfigurationFactory.ParseString($$"""
            balancer.pools { a.backends.x = "127.0.0.1:9001", b.backends.x = "127.0.0.1:9002" }
            balancer.frontends.web {
              bind = "127.0.0.1:8080"
              pool = a
              routes = [
            {{routes}}
              ]
            }
            """));
        var registry = new PoolRegistry();
        foreach (var pool in settings.Pools)
        {
            registry.Set(new PoolHandle(TestPools.Snapshot(pool)));
        }
        return RouteTable.Build(settings.Frontends.Single(), registry, registry.Find("a")!);
    }

    private static HttpRequest Request(string host, string path)
    {
        var context = new DefaultHttpContext();
        if (host.Length > 0)
        {
            context.Request.Headers.Host = host;
        }
        context.Request.Path = path;
        context.Request.Method = "GET";
        return context.Request;
    }
}
