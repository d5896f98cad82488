using System.Net;
using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Configuration;

public class ConfigurationChangeTests
{
    private const string Running = """
        balancer.pools.app {
          algorithm = round-robin
          health-check.path = "/healthz"
          backends { a = "10.0.0.1:80", b = "10.0.0.2:80" }
        }
        balancer.pools.old.backends.x = "10.0.0.9:80"
        balancer.frontends.web {
          bind = "127.0.0.1:8080"
          pool = app
          trusted-proxies = ["10.0.0.0/8"]
          routes = [ { name = api, hosts = ["api.example.com"], methods = [GET, PUT], pool = app } ]
        }
        balancer.frontends.raw { mode = tcp, bind = "127.0.0.1:7070", pool = app }
        """;

    private static BalancerSettings Read(string hocon) => BalancerSettings.Create(ConfigurationFactory.ParseString(hocon));

    [Fact]
    public void TheSameFileReadTwice_ChangesNothing_AndHasOneFingerprint()
    {
        var change = ConfigurationChange.Between(Read(Running), Read(Running));
        Assert.True(change.IsEmpty);
        Assert.Empty(change.NeedRestart);
        Assert.Equal(SettingsComparer.Fingerprint(Read(Running).Pools), SettingsComparer.Fingerprint(Read(Running).Pools));
    }

    [Fact]
    public void EachKindOfChange_IsNamed_AndOnlyListenerChangesReopenAFrontend()
    {
        var change = ConfigurationChange.Between(Read(Running), Read(Running + """

            balancer.pools.app.algorithm = least-connections
            balancer.pools.app.health-check.path = "/ready"
            balancer.pools.old = null
            balancer.pools.api.backends.c = "10.0.0.3:80"
            balancer.frontends.web.routes = [ { name = api, hosts = ["api.example.com"], pool = api } ]
            balancer.frontends.raw.bind = "127.0.0.1:7071"
            balancer.frontends.admin-web { bind = "127.0.0.1:8090", pool = api }
            balancer.node.drain-timeout = 5s
            """));
        Assert.Equal(["api"], change.PoolsAdded.Select(p => p.Name));
        Assert.Equal(["old"], change.PoolsRemoved.ToArray());
        var app = Assert.Single(change.PoolsChanged);
        Assert.Equal(["Algorithm", "HealthCheck"], app.Differing.Order());
        Assert.False(app.TransportChanged);
        Assert.False(app.AffinityChanged);
        Assert.Equal(["admin-web"], change.FrontendsAdded.Select(f => f.Name));
        var web = change.FrontendsChanged.Single(f => f.Settings.Name == "web");
        Assert.True(web.InPlace);
        Assert.Equal(["Routes"], web.Differing.ToArray());
        var raw = change.FrontendsChanged.Single(f => f.Settings.Name == "raw");
        Assert.False(raw.InPlace);
        Assert.Equal(["balancer.node.drain-timeout"], change.NeedRestart.ToArray());
        Assert.Equal(
            [
                "pool api added (1 backends, round-robin)",
                "pool app changed: algorithm, health-check",
                "pool old removed",
                "frontend admin-web added (127.0.0.1:8090 -> pool api)",
                "frontend web changed: routes",
                "frontend raw changed: bind (opened again)",
                "balancer.node.drain-timeout changed: takes effect when the node starts again",
            ],
            change.Describe());
    }

    [Fact]
    public void TlsOrProtocolOfAPool_IsATransportChange()
    {
        var change = ConfigurationChange.Between(Read(Running), Read(Running + "\nbalancer.pools.app.protocol = http2\n"));
        Assert.True(Assert.Single(change.PoolsChanged).TransportChanged);
    }

    [Fact]
    public async Task RoutesReplacedInPlace_TheOpenConnectionCarriesOn_AndTheNextRequestGoesByTheNewRoutes()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        var hocon = $$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = one }
            balancer.pools {
              one { health-check.kind = none, backends.a = "127.0.0.1:{{backends["a"].Port}}" }
              two { health-check.kind = none, backends.b = "127.0.0.1:{{backends["b"].Port}}" }
            }
            """;
        await using var host = await BalancerHost.StartAsync(hocon);
        using var socket = await TcpClients.ConnectAsync(host.EndPoint("web"));
        Assert.Equal("a", await GetOverAsync(socket, "/x"));

        var next = BalancerSettings.Create(ConfigurationFactory.ParseString(hocon + """

            balancer.frontends.web.routes = [ { name = to-two, path-prefix = "/two/", pool = two } ]
            """).WithFallback(host.System.Settings.Config));
        var change = await host.Extension.ApplyAsync(next, "test");
        Assert.Equal(["frontend web changed: routes"], change.Describe());

        // The same connection, the next request: by the new route.
        Assert.Equal("b", await GetOverAsync(socket, "/two/x"));
        Assert.Equal("a", await GetOverAsync(socket, "/x"));
        Assert.Equal(host.EndPoint("web"), host.Extension.FrontendEndPoints["web"][0]);
    }

    [Fact]
    public async Task AReloadThatCannotBindANewFrontend_IsRefusedWhole()
    {
        using var taken = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        var hocon = """
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app }
            balancer.pools.app { health-check.kind = none, backends.a = "127.0.0.1:1" }
            """;
        await using var host = await BalancerHost.StartAsync(hocon);
        var next = BalancerSettings.Create(ConfigurationFactory.ParseString(hocon + $$"""

            balancer.pools.more { health-check.kind = none, backends.a = "127.0.0.1:1" }
            balancer.frontends.second { bind = "127.0.0.1:{{port}}", pool = more }
            """).WithFallback(host.System.Settings.Config));
        var refused = await Assert.ThrowsAsync<BalancerConfigException>(() => host.Extension.ApplyAsync(next, "test"));
        Assert.Equal($"balancer.frontends.second.bind: cannot listen on 127.0.0.1:{port}: the address is already in use (another process listens there)", Assert.Single(refused.Problems).ToString());
        Assert.Null(host.Extension.Pools.Find("more"));
        Assert.DoesNotContain(host.Extension.Settings.Frontends, f => f.Name == "second");
    }

    /// <summary>GET over a kept-alive connection; the backend that answered.</summary>
    private static async Task<string> GetOverAsync(System.Net.Sockets.Socket socket, string path)
    {
        await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        var text = "";
        var answer = new byte[4096];
        // The demo backend answers chunked: read to the last chunk.
        while (!text.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(answer.AsMemory()).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(read > 0, "the connection was closed");
            text += System.Text.Encoding.ASCII.GetString(answer, 0, read);
        }
        Assert.StartsWith("HTTP/1.1 200", text);
        return System.Text.RegularExpressions.Regex.Match(text, "(?im)^X-Backend: (\\S+)").Groups[1].Value;
    }
}
