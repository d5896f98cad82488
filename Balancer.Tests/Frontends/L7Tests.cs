using System.Net;
using System.Net.Http;
using System.Net.WebSockets;
using System.Text;
using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Node.Backend;
using Balancer.Node.Backend.Rpc;
using Balancer.Tests.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;

namespace Balancer.Tests.Frontends;

/// <summary>
/// What platform teams put behind a balancer besides plain HTTP/1.1: gRPC over cleartext HTTP/2 and
/// over TLS to backends that require a client certificate, WebSockets, routes by host and path,
/// and retries of safe requests. Real Kestrel backends, real gRPC and WebSocket clients, real sockets.
/// </summary>
[Collection(SerialCollection.Name)]
public class L7Tests
{
    /// <summary>How plain HTTP/1.1 requests cross the frontends these tests start; <see cref="L7TestsOnYarp"/> runs them all again on Kestrel and YARP.</summary>
    protected virtual HttpEngine Engine => HttpEngine.FastPath;

    private Task<BalancerHost> StartAsync(string hocon) => BalancerHost.StartAsync(hocon, Engine);

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Grpc_ThroughCleartextHttp2_AllFourCallKinds_DeadlinesKept_AndAFailureStatusCountedInPassiveHealth()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await StartAsync($$"""
            balancer.pools.grpc {
              protocol = http2
              health-check.kind = tcp
              passive.consecutive-failures = 100
              backends { a = "127.0.0.1:{{backends["a"].Port}}", b = "127.0.0.1:{{backends["b"].Port}}" }
            }
            balancer.frontends.h2c { bind = "127.0.0.1:0", pool = grpc }
            """);
        using var channel = GrpcChannel.ForAddress(host.Uri("h2c"));
        var client = new Demo.DemoClient(channel);

        var served = new HashSet<string>();
        for (var i = 0; i < 6; i++)
        {
            var reply = await client.HelloAsync(new HelloRequest { Name = "unary" }, deadline: DateTime.UtcNow.AddSeconds(10));
            Assert.Equal("hello unary", reply.Message);
            served.Add(reply.Backend);
        }
        Assert.Equal(["a", "b"], served.Order());

        using (var stream = client.Count(new CountRequest { Count = 5, IntervalMs = 20 }, deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            var numbers = new List<int>();
            await foreach (var reply in stream.ResponseStream.ReadAllAsync())
            {
                numbers.Add(reply.Number);
            }
            Assert.Equal([1, 2, 3, 4, 5], numbers);
            Assert.Equal(StatusCode.OK, stream.GetStatus().StatusCode);
        }

        using (var sum = client.Sum(deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            for (var n = 1; n <= 100; n++)
            {
                await sum.RequestStream.WriteAsync(new Number { Value = n });
            }
            await sum.RequestStream.CompleteAsync();
            var total = await sum.ResponseAsync;
            Assert.Equal(5050, total.Sum);
            Assert.Equal(100, total.Count);
        }

        using (var chat = client.Chat(deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            var backend = "";
            foreach (var text in new[] { "one", "two", "three" })
            {
                await chat.RequestStream.WriteAsync(new ChatMessage { Text = text });
                Assert.True(await chat.ResponseStream.MoveNext());
                Assert.Equal(text, chat.ResponseStream.Current.Text);
                backend = backend.Length == 0 ? chat.ResponseStream.Current.Backend : backend;
                // One call is one stream: every message of it reaches the same backend.
                Assert.Equal(backend, chat.ResponseStream.Current.Backend);
            }
            await chat.RequestStream.CompleteAsync();
            Assert.False(await chat.ResponseStream.MoveNext());
        }

        // The client's deadline travels as grpc-timeout and ends the call on time through the proxy.
        var started = System.Diagnostics.Stopwatch.StartNew();
        var late = await Assert.ThrowsAsync<RpcException>(() => client.HelloAsync(new HelloRequest { Name = "slow", DelayMs = 5000 }, deadline: DateTime.UtcNow.AddMilliseconds(400)).ResponseAsync);
        Assert.Equal(StatusCode.DeadlineExceeded, late.StatusCode);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(3), $"the deadline took {started.Elapsed}");

        var pool = host.Extension.Pools.Find("grpc")!;
        var failuresBefore = pool.Snapshot.Backends.Sum(b => b.Counters.ResponseFailures);
        for (var i = 0; i < 4; i++)
        {
            var failed = await Assert.ThrowsAsync<RpcException>(() => client.HelloAsync(new HelloRequest { Name = "x", FailWith = (int)StatusCode.Unavailable }).ResponseAsync);
            Assert.Equal(StatusCode.Unavailable, failed.StatusCode);
        }
        // NOT_FOUND is the application's answer, not the backend's trouble: not a failure by default.
        await Assert.ThrowsAsync<RpcException>(() => client.HelloAsync(new HelloRequest { Name = "x", FailWith = (int)StatusCode.NotFound }).ResponseAsync);
        Assert.Equal(4, pool.Snapshot.Backends.Sum(b => b.Counters.GrpcStatuses((int)StatusCode.Unavailable)));
        Assert.Equal(1, pool.Snapshot.Backends.Sum(b => b.Counters.GrpcStatuses((int)StatusCode.NotFound)));
        Assert.Equal(failuresBefore + 4, pool.Snapshot.Backends.Sum(b => b.Counters.ResponseFailures));

        // The same listener still speaks HTTP/1.1 to clients that do.
        using var http1 = new HttpClient();
        var response = await http1.GetAsync(host.Uri("h2c", "/plain"));
        Assert.Equal(HttpVersion.Version11, response.Version);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Grpc_ThroughTlsFrontend_ToHttps2BackendsThatRequireAClientCertificate()
    {
        using var certificates = new TestCertificates();
        var backendCertificate = certificates.Issue("backend.test");
        var balancerClient = certificates.Issue("balancer.test", serverAuth: false, clientAuth: true);
        var frontendCertificate = certificates.Issue("lb.test");
        var backends = new List<DemoBackend>();
        try
        {
            foreach (var name in new[] { "a", "b" })
            {
                var backend = new DemoBackend(name, new IPEndPoint(IPAddress.Loopback, 0), tls: new DemoBackendTls(backendCertificate.Loaded, certificates.Authority));
                backends.Add(backend);
                await backend.StartAsync();
            }
            var hocon = TestCertificates.MutualTlsPoolBehindTlsFrontend(certificates, "secure", "tls",
                (balancerClient.Certificate, balancerClient.Key), (frontendCertificate.Certificate, frontendCertificate.Key), backends[0].Port, backends[1].Port);
            await using var host = await StartAsync(hocon);
            // Health checks speak https2 with the client certificate too: both backends come up.
            var pool = host.Extension.Pools.Find("secure")!;
            await Eventually.Holds(() => Assert.True(pool.Snapshot.Backends.All(b => b.Healthy)), TimeSpan.FromSeconds(15));

            using var handler = certificates.TrustingHandler();
            using var channel = GrpcChannel.ForAddress($"https://127.0.0.1:{host.EndPoint("tls").Port}", new GrpcChannelOptions { HttpHandler = handler });
            var client = new Demo.DemoClient(channel);
            var served = new HashSet<string>();
            for (var i = 0; i < 4; i++)
            {
                served.Add((await client.HelloAsync(new HelloRequest { Name = "tls" }, deadline: DateTime.UtcNow.AddSeconds(10))).Backend);
            }
            Assert.Equal(["a", "b"], served.Order());
            using var stream = client.Count(new CountRequest { Count = 3 }, deadline: DateTime.UtcNow.AddSeconds(10));
            var count = 0;
            await foreach (var _ in stream.ResponseStream.ReadAllAsync())
            {
                count++;
            }
            Assert.Equal(3, count);

            // Without the client certificate the backends refuse the balancer: the configuration
            // says so (a pool with the wrong CA is not even accepted by check-config).
            Assert.False(BalancerSettings.TryCreate(ConfigurationFactory.ParseString(hocon.Replace(certificates.AuthorityFile, "/nonexistent/ca.pem")), out _, out var problems));
            Assert.Contains(problems, p => p.Path == "balancer.pools.secure.tls.ca");
        }
        finally
        {
            foreach (var backend in backends)
            {
                await backend.StopAsync();
                await backend.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Https_ABackendsCertificateFromAnUnknownCa_IsRefused_UnlessVerifyIsOff()
    {
        using var certificates = new TestCertificates("CN=Some Other CA");
        var backendCertificate = certificates.Issue("backend.test");
        await using var backend = new DemoBackend("a", new IPEndPoint(IPAddress.Loopback, 0), tls: new DemoBackendTls(backendCertificate.Loaded, null));
        await backend.StartAsync();
        try
        {
            await using var host = await StartAsync($$"""
                balancer.pools {
                  checked { protocol = https, health-check.kind = none, backends.a = "127.0.0.1:{{backend.Port}}" }
                  unchecked { protocol = https, health-check.kind = none, tls.verify = off, backends.a = "127.0.0.1:{{backend.Port}}" }
                }
                balancer.frontends {
                  checked { bind = "127.0.0.1:0", pool = checked }
                  unchecked { bind = "127.0.0.1:0", pool = unchecked }
                }
                """);
            using var http = new HttpClient();
            // The system's CAs do not include the test CA: the handshake fails, the client gets a 502.
            using var refused = await http.GetAsync(host.Uri("checked", "/x"));
            Assert.Equal(HttpStatusCode.BadGateway, refused.StatusCode);
            Assert.Equal("a /x\n", await http.GetStringAsync(host.Uri("unchecked", "/x")));
        }
        finally
        {
            await backend.StopAsync();
        }
    }

    [Fact]
    public async Task WebSocket_IdleLongerThanTheRequestTimeout_StillEchoes_AndIsCountedAsATunnel()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync($$"""
            balancer.pools.ws { request-timeout = 500ms, backends.a = "127.0.0.1:{{backends["a"].Port}}" }
            balancer.frontends.web { bind = "127.0.0.1:0", pool = ws, tunnel-idle-timeout = 1h }
            """);
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://{host.EndPoint("web")}/ws"), CancellationToken.None).WaitAsync(Deadline);
        Assert.Equal("hello from a", await ReceiveTextAsync(socket));
        var counters = host.Extension.FrontendCounters("web");
        Assert.Equal(1, counters.Tunnels);

        // Three times the request timeout without a byte either way.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await socket.SendAsync(Encoding.UTF8.GetBytes("still there?"), WebSocketMessageType.Text, true, CancellationToken.None);
        Assert.Equal("still there?", await ReceiveTextAsync(socket));

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None).WaitAsync(Deadline);
        await Eventually.Holds(() => Assert.Equal(0, counters.Tunnels), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Routes_TwentyHostsAndPaths_OverFourPools_EachRequestReachesItsPool_WithItsHeaderChanges()
    {
        await using var backends = await BackendSet.StartAsync("p0", "p1", "p2", "p3");
        var routes = new StringBuilder();
        var expected = new List<(string Host, string Path, string Pool, string ForwardedPath)>();
        for (var i = 0; i < 20; i++)
        {
            var pool = $"p{i % 4}";
            var hostName = i < 10 ? $"h{i}.example.com" : $"any{i}.wild{i % 3}.example.org";
            var hosts = i < 10 ? $"\"{hostName}\"" : $"\"*.wild{i % 3}.example.org\"";
            var prefix = $"/svc{i}/";
            routes.Append($$"""
                { name = r{{i}}, hosts = [{{hosts}}], path-prefix = "{{prefix}}", pool = {{pool}}, rewrite-prefix = "/", request-headers.set.X-Route = r{{i}}, request-headers.remove = [X-Debug], response-headers.set.X-Route = r{{i}}, response-headers.remove = [X-Backend] }

                """);
            expected.Add((hostName, prefix + "headers", pool, "/headers"));
        }
        await using var host = await StartAsync($$"""
            balancer.pools {
              p0.backends.b = "127.0.0.1:{{backends["p0"].Port}}"
              p1.backends.b = "127.0.0.1:{{backends["p1"].Port}}"
              p2.backends.b = "127.0.0.1:{{backends["p2"].Port}}"
              p3.backends.b = "127.0.0.1:{{backends["p3"].Port}}"
            }
            balancer.frontends.web {
              bind = "127.0.0.1:0"
              pool = p0
              routes = [
            {{routes}}
              ]
            }
            """);
        using var http = new HttpClient();
        for (var i = 0; i < expected.Count; i++)
        {
            var (hostName, path, pool, forwardedPath) = expected[i];
            var counters = host.Extension.Pools.Find(pool)!.Snapshot.Backends[0].Counters;
            var before = counters.Requests;
            using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", path));
            request.Headers.Host = hostName;
            request.Headers.Add("X-Debug", "secret");
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(before + 1, counters.Requests);
            Assert.Equal($"r{i}", response.Headers.GetValues("X-Route").Single());
            Assert.False(response.Headers.Contains("X-Backend"), $"{hostName}{path}: X-Backend was to be removed");
            // /headers answered, so the prefix was stripped to {forwardedPath}; the backend saw the
            // route's header and not the removed one.
            Assert.Contains($"X-Route: r{i}\n", body);
            Assert.DoesNotContain("X-Debug", body);
            _ = forwardedPath;
        }
        // Each pool received exactly its five routes' requests.
        foreach (var pool in new[] { "p0", "p1", "p2", "p3" })
        {
            Assert.Equal(5, host.Extension.Pools.Find(pool)!.Snapshot.Backends[0].Counters.Requests);
        }
        // No route matches: the frontend's pool, the path unchanged.
        using var unmatched = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", "/elsewhere"));
        unmatched.Headers.Host = "unknown.example.net";
        using var fallback = await http.SendAsync(unmatched);
        Assert.Equal("p0", fallback.Headers.GetValues("X-Backend").Single());
        Assert.Equal("p0 /elsewhere\n", await fallback.Content.ReadAsStringAsync());
    }

    [Fact]
    public void Routes_Mistakes_EachRefusedWithOneLine_AShadowedRoute_ABadRegex_AnUnknownPool()
    {
        var ok = BalancerSettings.TryCreate(ConfigurationFactory.ParseString("""
            balancer.pools.api.backends.a = "127.0.0.1:9001"
            balancer.pools.www.backends.a = "127.0.0.1:9002"
            balancer.frontends.web {
              bind = "127.0.0.1:8080"
              pool = www
              routes = [
                { name = all-api, hosts = ["*.example.com"], path-prefix = "/api", pool = api }
                { name = v1, hosts = ["shop.example.com"], path-prefix = "/api/v1/", methods = [GET], pool = www }
                { name = images, path-regex = "([a-z]+", pool = www }
                { name = lost, hosts = ["a.example.com"], pool = nowhere }
              ]
            }
            """), out _, out var problems);
        Assert.False(ok);
        Assert.True(problems.Count == 3, string.Join("\n", problems));
        Assert.Contains(problems, p => p.Path == "balancer.frontends.web.routes[1]" && p.Message.Contains("\"v1\" is never matched: route \"all-api\""));
        Assert.Contains(problems, p => p.Path == "balancer.frontends.web.routes[2].path-regex" && p.Message.StartsWith("bad regular expression"));
        Assert.Contains(problems, p => p.Path == "balancer.frontends.web.routes[3].pool" && p.Message.Contains("unknown pool \"nowhere\""));
    }

    [Fact]
    public async Task Retries_ResetGetsGoElsewhere_ThePoolBudgetHoldsUnderAllResets_AndAPostIsNeverResent()
    {
        await using var backends = await BackendSet.StartAsync("good");
        using var flaky = new ResettingServer();
        using var dead1 = new ResettingServer();
        using var dead2 = new ResettingServer();
        using var postOnly = new ResettingServer();
        await using var host = await StartAsync($$"""
            balancer.pools.mixed {
              health-check.kind = none
              backends { flaky = "127.0.0.1:{{flaky.Port}}", good = "127.0.0.1:{{backends["good"].Port}}" }
            }
            balancer.pools.dead {
              health-check.kind = none
              passive.consecutive-failures = 0
              retry { budget = 20%, min-per-second = 1 }
              backends { d1 = "127.0.0.1:{{dead1.Port}}", d2 = "127.0.0.1:{{dead2.Port}}" }
            }
            balancer.pools.post {
              health-check.kind = none
              passive.consecutive-failures = 0
              backends { reset = "127.0.0.1:{{postOnly.Port}}", good = "127.0.0.1:{{backends["good"].Port}}" }
            }
            balancer.frontends.mixed { bind = "127.0.0.1:0", pool = mixed }
            balancer.frontends.dead { bind = "127.0.0.1:0", pool = dead }
            balancer.frontends.post { bind = "127.0.0.1:0", pool = post }
            """);
        using var http = new HttpClient();

        // Round robin sends every first attempt to the resetting backend (the retry moves it on)
        // until passive health ejects it: the budget's minimum covers those retries.
        for (var i = 0; i < 40; i++)
        {
            using var response = await http.GetAsync(host.Uri("mixed", $"/get/{i}"));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {i}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
        Assert.True(flaky.Reset >= 5, $"round robin sent {flaky.Reset} of 40 GETs to the backend that resets");

        // Every backend resets: each GET may be retried, but not beyond the budget.
        const int gets = 200;
        for (var i = 0; i < gets; i++)
        {
            using var response = await http.GetAsync(host.Uri("dead", $"/get/{i}"));
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        }
        var sent = dead1.Reset + dead2.Reset;
        const int seconds = 3;
        Assert.True(sent >= gets, $"{sent} attempts for {gets} GETs");
        // 20 % of the requests, plus the minimum of 1 a second over the two seconds counted at a time.
        Assert.True(sent <= gets * 1.2 + 2 * seconds + 10, $"{sent} attempts for {gets} GETs: the budget allows about {gets * 1.2}");
        Assert.True(host.Extension.Pools.Find("dead")!.RetryBudget.Refused > 0);

        // A POST with a body is sent once, whichever backend it reaches.
        for (var i = 0; i < 6; i++)
        {
            var before = postOnly.Reset;
            using var response = await http.PostAsync(host.Uri("post", "/echo"), new StringContent("order " + i));
            var resetNow = postOnly.Reset - before;
            if (response.StatusCode == HttpStatusCode.OK)
            {
                Assert.Equal("order " + i, await response.Content.ReadAsStringAsync());
                Assert.Equal(0, resetNow);
            }
            else
            {
                Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
                Assert.Equal(1, resetNow);
            }
        }
        Assert.True(postOnly.Reset >= 2, "round robin sent POSTs to the backend that resets");
    }

    [Fact]
    public async Task RetryOnStatus_AnotherBackendAnswers_AndTheLastBackendsAnswerPassesAsItIs()
    {
        await using var backends = await BackendSet.StartAsync(["bad", "good"], name => name == "bad" ? 1.0 : 0.0);
        await using var host = await StartAsync($$"""
            balancer.pools {
              both { health-check.kind = none, passive.consecutive-failures = 0, retry.on-status = [500, 503], retry.budget = 100%, backends { bad = "127.0.0.1:{{backends["bad"].Port}}", good = "127.0.0.1:{{backends["good"].Port}}" } }
              alone { health-check.kind = none, retry.on-status = [500], backends.bad = "127.0.0.1:{{backends["bad"].Port}}" }
            }
            balancer.frontends {
              both { bind = "127.0.0.1:0", pool = both }
              alone { bind = "127.0.0.1:0", pool = alone }
            }
            """);
        using var http = new HttpClient();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.GetAsync(host.Uri("both", $"/r{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"good /r{i}\n", await response.Content.ReadAsStringAsync());
        }
        var bad = host.Extension.Pools.Find("both")!.Snapshot.Backends.Single(b => b.Name == "bad").Counters;
        Assert.True(bad.Responses(5) >= 5, $"the bad backend answered {bad.Responses(5)} 5xx");
        // With no other backend to ask, the backend's own answer reaches the client, body and all.
        using var alone = await http.GetAsync(host.Uri("alone", "/x"));
        Assert.Equal(HttpStatusCode.InternalServerError, alone.StatusCode);
        Assert.Equal("bad failed (fail-rate)\n", await alone.Content.ReadAsStringAsync());
    }

    private static async Task<string> ReceiveTextAsync(ClientWebSocket socket)
    {
        var buffer = new byte[4096];
        var result = await socket.ReceiveAsync(buffer, CancellationToken.None).WaitAsync(Deadline);
        return Encoding.UTF8.GetString(buffer, 0, result.Count);
    }
}

/// <summary>The tests of <see cref="L7Tests"/> with plain HTTP/1.1 through Kestrel and YARP instead of the fast path.</summary>
[Collection(SerialCollection.Name)]
public sealed class L7TestsOnYarp : L7Tests
{
    protected override HttpEngine Engine => HttpEngine.Yarp;
}
