using Akka.Configuration;
using Balancer.Configuration;

namespace Balancer.Tests.Configuration;

public class BalancerSettingsTests
{
    [Fact]
    public void Create_EmptyConfig_UsesReferenceDefaults()
    {
        var settings = BalancerSettings.Create(Config.Empty);
        Assert.Equal(NodeMode.ActiveActive, settings.Node.Mode);
        Assert.Equal(new EndpointAddress("127.0.0.1", 9110), settings.Node.AdminBind);
        Assert.Equal("", settings.Node.AdminToken);
        Assert.True(settings.Node.StartFrontends);
        Assert.Empty(settings.Frontends);
        Assert.Empty(settings.Pools);
    }

    [Fact]
    public void Create_PoolWithOnlyBackends_TakesEveryPoolDefault()
    {
        var pool = BalancerSettings.Create(ConfigurationFactory.ParseString("balancer.pools.app.backends.a = \"10.0.0.1:80\"")).FindPool("app")!;
        Assert.Equal("round-robin", pool.Algorithm);
        Assert.Equal(HashKey.SourceIp, pool.HashKey);
        Assert.Equal(AffinityMode.None, pool.Affinity.Mode);
        Assert.Equal("BALANCER", pool.Affinity.CookieName);
        Assert.Equal(TimeSpan.FromMinutes(30), pool.Affinity.Ttl);
        Assert.Equal(AffinityWriteConsistency.Local, pool.Affinity.Write);
        Assert.Equal(100, pool.Affinity.Buckets);
        Assert.Equal(1127, pool.Affinity.BucketCapacity);
        Assert.Equal(100_000, pool.Affinity.MaxEntries);
        Assert.Equal(100, pool.Affinity.NewSessionsPerClient);
        Assert.Equal(HealthCheckKind.Http, pool.HealthCheck.Kind);
        Assert.Equal("/healthz", pool.HealthCheck.Path);
        Assert.True(pool.HealthCheck.ExpectStatus.Contains(200) && pool.HealthCheck.ExpectStatus.Contains(399) && !pool.HealthCheck.ExpectStatus.Contains(400));
        Assert.Equal(TimeSpan.FromSeconds(1), pool.HealthCheck.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(500), pool.HealthCheck.Timeout);
        Assert.Equal((2, 2), (pool.HealthCheck.Rise, pool.HealthCheck.Fall));
        Assert.Equal(ProbePlacement.Sharded, pool.HealthCheck.Placement);
        Assert.Equal(5, pool.Passive.ConsecutiveFailures);
        Assert.Equal(TimeSpan.FromSeconds(30), pool.Passive.Ejection);
        Assert.Equal(0.5, pool.Passive.MaxEjectedPercent);
        Assert.Equal(0.5, pool.PanicThreshold);
        Assert.Equal(TimeSpan.FromSeconds(10), pool.SlowStart);
        Assert.Equal(2, pool.Retries);
        Assert.Equal(TimeSpan.FromSeconds(2), pool.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(100), pool.RequestTimeout);
        var backend = Assert.Single(pool.Backends);
        Assert.Equal(new Balancer.Configuration.BackendSettings("a", new EndpointAddress("10.0.0.1", 80), 100), backend);
    }

    [Fact]
    public void Create_Frontend_TakesFrontendDefaults()
    {
        var settings = BalancerSettings.Create(ConfigurationFactory.ParseString("""
            balancer.pools.app.backends.a = "127.0.0.1:9001"
            balancer.frontends.web { bind = "0.0.0.0:8080", pool = app }
            """));
        var web = Assert.Single(settings.Frontends);
        Assert.Equal(FrontendMode.Http, web.Mode);
        Assert.Equal([new EndpointAddress("0.0.0.0", 8080)], web.Bind.ToArray());
        Assert.False(web.ReusePort);
        Assert.Equal(TimeSpan.FromMinutes(5), web.IdleTimeout);
        Assert.Equal(10000, web.MaxConnections);
        Assert.True(web.PreserveHost);
        Assert.Equal(ForwardedHeadersMode.Append, web.ForwardedHeaders);
        Assert.Empty(web.TrustedProxies);
    }

    [Fact]
    public void Create_UserPoolDefaults_ApplyToEveryPool()
    {
        var settings = BalancerSettings.Create(ConfigurationFactory.ParseString("""
            balancer.pool-defaults.retries = 5
            balancer.pools.a.backends.x = "127.0.0.1:1"
            balancer.pools.b { retries = 1, backends.y = "127.0.0.1:2" }
            """));
        Assert.Equal(5, settings.FindPool("a")!.Retries);
        Assert.Equal(1, settings.FindPool("b")!.Retries);
    }

    [Theory]
    [InlineData("balancer.frontends.web { bind = \"127.0.0.1:8080\", pool = missing }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"",
        "balancer.frontends.web.pool: unknown pool \"missing\" (defined pools: app)")]
    [InlineData("balancer.pools.app.backends.a = \"127.0.0.1\"", "balancer.pools.app.backends.a: expected HOST:PORT, got \"127.0.0.1\"")]
    [InlineData("balancer.pools.app.backends.a = \"127.0.0.1:70000\"", "balancer.pools.app.backends.a: port \"70000\" is not a number from 1 to 65535")]
    [InlineData("balancer.pools.app.backends.a { address = \"127.0.0.1:1\", weight = -1 }", "balancer.pools.app.backends.a.weight: expected a whole number from 0 to 10000, got \"-1\"")]
    [InlineData("balancer.pools.app.backends.a { weight = 5 }", "balancer.pools.app.backends.a.address: expected HOST:PORT of the backend")]
    [InlineData("balancer.pools.app.backends.a { address = [\"127.0.0.1:1\"] }", "balancer.pools.app.backends.a.address: expected a single value, got an object or a list")]
    [InlineData("balancer.pools.app.panic-threshold = \"\"\nbalancer.pools.app.affinity.mode = sticky", "balancer.pools.app.affinity.mode: expected none")]
    [InlineData("balancer.pools.app.algorithm = fastest", "balancer.pools.app.algorithm: unknown algorithm \"fastest\" (expected one of round-robin | weighted-round-robin | least-connections | power-of-two | consistent-hash | maglev | random | first)")]
    [InlineData("balancer.pools.app.hash-key = \"body\"", "balancer.pools.app.hash-key: expected source-ip | header:NAME | cookie:NAME | path, got \"body\"")]
    [InlineData("balancer.pools.app.affinity.mode = sticky", "balancer.pools.app.affinity.mode: expected none | cookie | learn-cookie:NAME | header:NAME | source-ip, got \"sticky\"")]
    [InlineData("balancer.pools.app.health-check.interval = soon", "balancer.pools.app.health-check.interval: expected a duration such as 500ms, 5s or 2m, got \"soon\"")]
    [InlineData("balancer.pools.app.health-check.expect-status = \"200-99\"", "balancer.pools.app.health-check.expect-status: expected status codes or ranges from 100 to 599 such as \"200-399,404\", got \"200-99\"")]
    [InlineData("balancer.pools.app.panic-threshold = 150%", "balancer.pools.app.panic-threshold: expected a percentage from 0% to 100%, got \"150%\"")]
    [InlineData("balancer.pools.app.retries = -1", "balancer.pools.app.retries: expected a whole number from 0 to 100, got \"-1\"")]
    [InlineData("balancer.pool-defaults.retries = many\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.pools.app.retries: expected a whole number from 0 to 100, got \"many\"")]
    [InlineData("balancer.backend-defaults.weight = heavy\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.backend-defaults.weight: expected a whole number from 0 to 10000, got \"heavy\"")]
    [InlineData("balancer.frontend-defaults.idle-timeout = soon\nbalancer.frontends.web { bind = \"127.0.0.1:1\", pool = app }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.frontends.web.idle-timeout: expected a duration such as 500ms, 5s or 2m, got \"soon\"")]
    [InlineData("balancer.pools.app.algoritm = maglev", "balancer.pools.app.algoritm: unknown key")]
    [InlineData("balancer.node.mode = active-standby", "balancer.node.mode: expected one of active-active | active-passive, got \"active-standby\"")]
    [InlineData("balancer.frontends.web { mode = udp, bind = \"127.0.0.1:1\", pool = app }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.frontends.web.mode: expected one of http | tcp, got \"udp\"")]
    [InlineData("balancer.frontends.web { pool = app }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.frontends.web.bind: expected at least one IP:PORT to listen on")]
    [InlineData("balancer.frontends.web { bind = \"example.com:80\", pool = app }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"", "balancer.frontends.web.bind: expected an IP address to listen on, got host name \"example.com\"")]
    [InlineData("balancer.pools.\"bad name\".backends.a = \"127.0.0.1:1\"", "balancer.pools.bad name: a pool name uses letters, digits, - and _ (at most 64)")]
    [InlineData("balancer.pools.app.affinity.mode = cookie\nbalancer.node.affinity-key = short", "balancer.node.affinity-key: affinity needs a secret of at least 16 characters, the same on every node (or leave it empty: the cluster generates one)")]
    [InlineData("balancer.pools.app.affinity.buckets = 0", "balancer.pools.app.affinity.buckets: expected a whole number from 1 to 100000, got \"0\"")]
    [InlineData("balancer.pools.app.affinity.buckets = 16\nbalancer.pools.app.affinity.max-entries = 100000", "balancer.pools.app.affinity.buckets: at most 1500 sessions a bucket fit every remoting frame, and 16 buckets hold up to 6567 each at max-entries = 100000: set more, or auto")]
    [InlineData("balancer.pools.app.health-check { interval = 1s, timeout = 2s }", "balancer.pools.app.health-check.timeout: expected at most health-check.interval (1000ms), got 2000ms")]
    [InlineData("balancer.frontends.web { bind = \"127.0.0.1:1\", pool = app, routes = [{ name = r, path-prefix = \"/\", pool = app, request-headers.remove = [Content-Length] }] }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"",
        "balancer.frontends.web.routes[0].request-headers.remove: Content-Length frames the message or describes one connection; Balancer sets it for each hop")]
    [InlineData("balancer.frontends.web { bind = \"127.0.0.1:1\", pool = app, routes = [{ name = r, path-prefix = \"/\", pool = app, response-headers.set { Transfer-Encoding = chunked } }] }\nbalancer.pools.app.backends.a = \"127.0.0.1:1\"",
        "balancer.frontends.web.routes[0].response-headers.set: Transfer-Encoding frames the message or describes one connection; Balancer sets it for each hop")]
    public void Create_InvalidValue_OneLineNamingTheKey(string hocon, string expected)
    {
        var problems = Problems(hocon);
        var problem = Assert.Single(problems);
        Assert.StartsWith(expected, problem);
    }

    [Fact]
    public void Create_DuplicateBind_NamesBothOwners()
    {
        var problems = Problems("""
            balancer.node.admin.enabled = on
            balancer.pools.app.backends.a = "127.0.0.1:1"
            balancer.frontends.web { bind = "127.0.0.1:8080", pool = app }
            balancer.frontends.raw { mode = tcp, bind = "0.0.0.0:8080", pool = app }
            balancer.frontends.api { bind = ["127.0.0.1:9110"], pool = app }
            """);
        Assert.Equal(2, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("balancer.frontends.raw.bind: 0.0.0.0:8080 is already bound by balancer.frontends.web.bind", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("balancer.frontends.api.bind: 127.0.0.1:9110 is already bound by balancer.node.admin.bind", StringComparison.Ordinal));
    }

    [Fact]
    public void Create_ManyMistakes_ReportsEveryOne()
    {
        var problems = Problems("""
            balancer.frontends.web { bind = "127.0.0.1:80800", pool = ap }
            balancer.pools.app {
              algorithm = fastest
              backends.a { address = "127.0.0.1:9001", weight = -3 }
            }
            """);
        Assert.Equal(4, problems.Count);
        var exception = Assert.Throws<BalancerConfigException>(() => BalancerSettings.Create(ConfigurationFactory.ParseString(
            "balancer.pools.app.algorithm = fastest")));
        Assert.Single(exception.Problems);
        Assert.Contains("balancer.pools.app.algorithm", exception.Message);
    }

    [Theory]
    [InlineData("127.0.0.1:80", "127.0.0.1", 80)]
    [InlineData("backend.internal:8080", "backend.internal", 8080)]
    [InlineData("[::1]:443", "::1", 443)]
    public void EndpointAddress_Parses(string text, string host, int port)
    {
        Assert.True(EndpointAddress.TryParse(text, out var address, out _));
        Assert.Equal(new EndpointAddress(host, port), address);
    }

    [Theory]
    [InlineData("")]
    [InlineData("127.0.0.1")]
    [InlineData("::1:80")]
    [InlineData("[::1]80")]
    [InlineData("host:0")]
    [InlineData("bad host:80")]
    public void EndpointAddress_RejectsMalformed(string text)
    {
        Assert.False(EndpointAddress.TryParse(text, out _, out var error));
        Assert.NotEmpty(error);
    }

    private static List<string> Problems(string hocon)
    {
        BalancerSettings.TryCreate(ConfigurationFactory.ParseString(hocon), out _, out var problems);
        return problems.Select(p => p.ToString()).ToList();
    }

    [Fact]
    public void Backend_SetToNull_IsRemoved()
    {
        var settings = BalancerSettings.Create(ConfigurationFactory.ParseString("""
            balancer.pools.app.backends.b = null
            balancer.pools.app.backends.d = "127.0.0.1:9004"
            """).WithFallback(ConfigurationFactory.ParseString("""
            balancer.pools.app { backends { a = "127.0.0.1:9001", b = "127.0.0.1:9002" } }
            """)));
        Assert.Equal(["a", "d"], settings.FindPool("app")!.Backends.Select(b => b.Name).Order());
    }
}
