using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Frontends;

public class HttpFrontendTests
{
    /// <summary>How plain HTTP/1.1 requests cross the frontends these tests start; <see cref="HttpFrontendTestsOnYarp"/> runs them all again on Kestrel and YARP.</summary>
    protected virtual HttpEngine Engine => HttpEngine.FastPath;

    private Task<BalancerHost> StartAsync(string hocon) => BalancerHost.StartAsync(hocon, Engine);

    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromSeconds(1) })
    {
        Timeout = TimeSpan.FromSeconds(20),
    };

    private static string Config(BackendSet backends, string poolExtra = "", params string[] extraBackends) => $$"""
        balancer {
          frontends.web { mode = http, bind = "127.0.0.1:0", pool = app }
          pools.app {
            algorithm = round-robin
            {{poolExtra}}
            {{backends.Hocon(extraBackends)}}
          }
        }
        """;

    [Fact]
    public async Task Forward_RoundRobin_ReachesEveryBackendEqually()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await StartAsync(Config(backends));
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 60; i++)
        {
            using var response = await Client.GetAsync(host.Uri("web", "/hello"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var name = response.Headers.GetValues("X-Backend").Single();
            Assert.Equal($"{name} /hello\n", await response.Content.ReadAsStringAsync());
            counts[name] = counts.GetValueOrDefault(name) + 1;
        }
        Assert.Equal(new Dictionary<string, int> { ["a"] = 20, ["b"] = 20, ["c"] = 20 }, counts);
    }

    [Theory]
    // A client that is not a trusted proxy: what it claims is removed, the backend sees the real client.
    [InlineData("", "127.0.0.1", "http", "shop.example", null, null)]
    // A trusted proxy in front: its chain is kept and extended, its proto and host kept.
    [InlineData("trusted-proxies = [\"127.0.0.0/8\"]", "203.0.113.9, 127.0.0.1", "https", "www.example", "for=203.0.113.9", "203.0.113.9")]
    // A trusted proxy, but replace mode: only this hop counts.
    [InlineData("trusted-proxies = [\"127.0.0.1\"], forwarded-headers = replace", "127.0.0.1", "http", "shop.example", null, null)]
    // Off: nothing added or removed.
    [InlineData("forwarded-headers = off", "203.0.113.9", "https", "www.example", "for=203.0.113.9", "203.0.113.9")]
    public async Task Forward_ForwardingHeaders_TrustedOnlyFromTrustedProxies_AndKeepsHost(string frontend, string forwardedFor, string proto, string forwardedHost, string? forwarded, string? realIp)
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync(Config(backends).Replace("pool = app }", $"pool = app, {frontend} }}").Replace(", , ", ", ").Replace(",  }", " }"));
        using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", "/headers"));
        request.Headers.Host = "shop.example";
        // What a client (or the proxy in front) claims.
        request.Headers.Add("X-Forwarded-For", "203.0.113.9");
        request.Headers.Add("X-Forwarded-Proto", "https");
        request.Headers.Add("X-Forwarded-Host", "www.example");
        request.Headers.Add("Forwarded", "for=203.0.113.9");
        request.Headers.Add("X-Real-IP", "203.0.113.9");
        request.Headers.Add("X-Custom", "kept");
        using var response = await Client.SendAsync(request);
        var headers = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(": ", 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);
        Assert.Equal("shop.example", headers["Host"]);
        Assert.Equal(forwardedFor, headers["X-Forwarded-For"]);
        Assert.Equal(proto, headers["X-Forwarded-Proto"]);
        Assert.Equal(forwardedHost, headers["X-Forwarded-Host"]);
        Assert.Equal(forwarded, headers.GetValueOrDefault("Forwarded"));
        Assert.Equal(realIp, headers.GetValueOrDefault("X-Real-IP"));
        Assert.Equal("kept", headers["X-Custom"]);
    }

    [Fact]
    public async Task Forward_LargeRequestAndResponseBodies_ArriveIntact()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync(Config(backends));
        var body = new byte[3 * 1024 * 1024 + 17];
        new Random(7).NextBytes(body);
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var echoed = await Client.PostAsync(host.Uri("web", "/echo"), content);
        Assert.Equal(HttpStatusCode.OK, echoed.StatusCode);
        Assert.Equal(body, await echoed.Content.ReadAsByteArrayAsync());

        using var large = await Client.GetAsync(host.Uri("web", "/bytes?n=2000000"));
        Assert.Equal(2_000_000, large.Content.Headers.ContentLength);
        Assert.Equal(2_000_000, (await large.Content.ReadAsByteArrayAsync()).Length);
    }

    [Fact]
    public async Task Forward_ChunkedBodiesBothWays()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync(Config(backends));

        using var chunked = await Client.GetAsync(host.Uri("web", "/bytes?n=1100000&chunked=1"));
        Assert.True(chunked.Headers.TransferEncodingChunked);
        Assert.Equal(1_100_000, (await chunked.Content.ReadAsByteArrayAsync()).Length);

        var payload = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("chunk-of-data;", 100_000)));
        using var request = new HttpRequestMessage(HttpMethod.Post, host.Uri("web", "/echo")) { Content = new StreamContent(new MemoryStream(payload)) };
        request.Headers.TransferEncodingChunked = true;
        using var echoed = await Client.SendAsync(request);
        Assert.Equal(payload, await echoed.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task Forward_BackendRefuses_RetriedOnAnotherWithNoFailure()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        var closed = Ports.Closed();
        await using var host = await StartAsync(Config(backends, "retries = 2", $"dead = \"127.0.0.1:{closed}\""));
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 30; i++)
        {
            using var response = await Client.GetAsync(host.Uri("web", "/"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var name = response.Headers.GetValues("X-Backend").Single();
            counts[name] = counts.GetValueOrDefault(name) + 1;
        }
        Assert.Equal(30, counts["a"] + counts["b"]);
        var dead = host.Extension.Pools.Find("app")!.Snapshot.Backends.Single(b => b.Name == "dead");
        Assert.InRange(dead.Counters.ConnectFailures, 1, 30);
        Assert.Equal(0, dead.Counters.InFlight);
    }

    [Fact]
    public async Task Forward_BackendConnectTimesOut_RetriedOnAnother()
    {
        await using var backends = await BackendSet.StartAsync("a");
        using var stuck = await StuckListener.StartAsync();
        // "first" tries the stuck backend (listed first) for every request.
        await using var host = await StartAsync($$"""
            balancer {
              frontends.web { bind = "127.0.0.1:0", pool = app }
              pools.app {
                algorithm = first
                connect-timeout = 300ms
                retries = 1
                health-check.kind = none
                backends {
                  stuck = "127.0.0.1:{{stuck.Port}}"
                  a = "127.0.0.1:{{backends["a"].Port}}"
                }
              }
            }
            """);
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var response = await Client.GetAsync(host.Uri("web", "/"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("a", response.Headers.GetValues("X-Backend").Single());
        Assert.InRange(started.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Forward_BackendStopsUnderLoad_NoFailedRequests()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await StartAsync(Config(backends));
        var failures = 0;
        for (var i = 0; i < 90; i++)
        {
            if (i == 30)
            {
                await backends["b"].StopAsync();
            }
            using var response = await Client.GetAsync(host.Uri("web", "/"));
            failures += response.IsSuccessStatusCode ? 0 : 1;
        }
        Assert.Equal(0, failures);
    }

    [Fact]
    public async Task Forward_EveryBackendRefuses_502NamingThePool()
    {
        await using var host = await StartAsync($$"""
            balancer {
              frontends.web { bind = "127.0.0.1:0", pool = app }
              pools.app { retries = 1, backends { x = "127.0.0.1:{{Ports.Closed()}}", y = "127.0.0.1:{{Ports.Closed()}}" } }
            }
            """);
        using var response = await Client.GetAsync(host.Uri("web", "/"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("502 no backend of pool 'app' answered\n", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Forward_NoRoutableBackend_503NamingThePool()
    {
        await using var host = await StartAsync("""
            balancer {
              frontends.web { bind = "127.0.0.1:0", pool = empty }
              pools.empty { }
            }
            """);
        using var response = await Client.GetAsync(host.Uri("web", "/"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("503 pool 'empty' has no available backend\n", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Forward_BackendResetsMidResponse_ClientSeesTheFailureAndNodeKeepsServing()
    {
        await using var backends = await BackendSet.StartAsync("a");
        using var resetter = new ResettingServer();
        await using var host = await StartAsync($$"""
            balancer {
              frontends.web { bind = "127.0.0.1:0", pool = flaky }
              frontends.ok { bind = "127.0.0.1:0", pool = app }
              pools.flaky.backends.r = "127.0.0.1:{{resetter.Port}}"
              pools.app.{{backends.Hocon()}}
            }
            """);
        using var response = await Client.GetAsync(host.Uri("web", "/"));
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        using var healthy = await Client.GetAsync(host.Uri("ok", "/"));
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
    }

    [Fact]
    public async Task Forward_MalformedRequest_RejectedByTheFrontendWithoutReachingBackends()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync(Config(backends));
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(host.EndPoint("web"));
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n"));
        var buffer = new byte[1024];
        var read = await socket.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(read > 0, "the frontend closed the connection without an answer");
        Assert.StartsWith("HTTP/1.1 400", Encoding.ASCII.GetString(buffer, 0, read));
        Assert.Equal(0, host.Extension.Pools.Find("app")!.Snapshot.Backends[0].Counters.Requests);
    }
}

/// <summary>The tests of <see cref="HttpFrontendTests"/> with plain HTTP/1.1 through Kestrel and YARP instead of the fast path.</summary>
public sealed class HttpFrontendTestsOnYarp : HttpFrontendTests
{
    protected override HttpEngine Engine => HttpEngine.Yarp;
}
