using System.Net;
using System.Text.RegularExpressions;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Node;

/// <summary>
/// The shipped hocon/node1.conf run as a real <c>balancer run</c> process in front of three real
/// <c>balancer backend</c> processes (ports moved to free ones with --set, so a running demo does not collide).
/// </summary>
[Collection(SerialCollection.Name)]
public class NodeProcessTests
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>A demo backend process on a free port, once it listens.</summary>
    private static async Task<(NodeProcess Process, int Port)> StartBackendAsync(ProcessGroup cleanup, string name)
    {
        var process = cleanup.Add(NodeProcess.Start("backend", "--port", "0", "--name", name));
        await process.WaitForOutputAsync("listening on", StartTimeout);
        return (process, int.Parse(Regex.Match(process.Output, @"127\.0\.0\.1:(\d+)").Groups[1].Value));
    }

    /// <summary><c>balancer run</c> of hocon/node1.conf alone, every port it opens a free one, plus <paramref name="sets"/>.</summary>
    private static NodeProcess StartNode1OnFreePorts(ProcessGroup cleanup, params string[] sets) => cleanup.Add(NodeProcess.Start(
    [
        "run", "--config", Path.Combine(CommandLineTests.RepositoryRoot(), "hocon", "node1.conf"),
        "--set", "akka.remote.dot-netty.tcp.port=0",
        "--set", "akka.cluster.seed-nodes=[]",
        "--set", "balancer.node.admin.bind=127.0.0.1:0",
        "--set", "balancer.frontends.web.bind=127.0.0.1:0",
        "--set", "balancer.frontends.web-node1.bind=127.0.0.1:0",
        "--set", "balancer.frontends.raw.bind=127.0.0.1:0",
        "--set", "balancer.frontends.raw-node1.bind=127.0.0.1:0",
        .. sets,
    ]));

    /// <summary>Node 1 in front of one backend process, "a" (b and c removed), once it is ready.</summary>
    private static async Task<(NodeProcess Node, (NodeProcess Process, int Port) Backend)> StartNode1WithBackendAAsync(ProcessGroup cleanup)
    {
        var backend = await StartBackendAsync(cleanup, "a");
        var node = StartNode1OnFreePorts(cleanup,
            "--set", $"balancer.pools.app.backends.a=127.0.0.1:{backend.Port}",
            "--set", "balancer.pools.app.backends.b=null",
            "--set", "balancer.pools.app.backends.c=null");
        await node.WaitForOutputAsync(" ready", StartTimeout);
        return (node, backend);
    }

    [Fact]
    public async Task Run_Node1WithThreeBackendProcesses_RoundRobinTcpAndBackendDeath()
    {
        var backends = new List<(NodeProcess Process, int Port)>();
        await using var cleanup = new ProcessGroup();
        foreach (var name in new[] { "a", "b", "c" })
        {
            backends.Add(await StartBackendAsync(cleanup, name));
        }

        var node = StartNode1OnFreePorts(cleanup,
            "--set", $"balancer.pools.app.backends.a=127.0.0.1:{backends[0].Port}",
            "--set", $"balancer.pools.app.backends.b=127.0.0.1:{backends[1].Port}",
            "--set", $"balancer.pools.app.backends.c=127.0.0.1:{backends[2].Port}");
        await node.WaitForOutputAsync(" ready", StartTimeout);
        var http = FrontendEndPoint(node.Output, "web-node1");
        var tcp = FrontendEndPoint(node.Output, "raw-node1");

        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 300; i++)
        {
            using var response = await client.GetAsync($"http://{http}/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var name = response.Headers.GetValues("X-Backend").Single();
            counts[name] = counts.GetValueOrDefault(name) + 1;
        }
        Assert.Equal(new Dictionary<string, int> { ["a"] = 100, ["b"] = 100, ["c"] = 100 }, counts);

        using (var tcpClient = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }))
        {
            var body = await tcpClient.GetStringAsync($"http://{tcp}/over-tcp");
            Assert.Matches("^[abc] /over-tcp\n$", body);
        }

        // A backend whose health check fails leaves the rotation within fall × interval + timeout + 1 s
        // (node1.conf keeps the defaults: 2 × 1 s + 500 ms + 1 s), and comes back after it recovers.
        await client.PostAsync($"http://127.0.0.1:{backends[0].Port}/control/health?ok=false", null);
        await Task.Delay(TimeSpan.FromSeconds(2 * 1 + 0.5 + 1));
        for (var i = 0; i < 30; i++)
        {
            using var response = await client.GetAsync($"http://{http}/");
            Assert.NotEqual("a", response.Headers.GetValues("X-Backend").Single());
        }
        Assert.Contains("backend a is DOWN: health check: 2 check(s) failed, last: HTTP 503", node.Output);
        await client.PostAsync($"http://127.0.0.1:{backends[0].Port}/control/health?ok=true", null);
        await node.WaitForOutputAsync("backend a is UP", TimeSpan.FromSeconds(10));

        // kill -9 of one backend in the middle of a request loop: connect failures are retried elsewhere.
        var failed = 0;
        var lastFailure = "";
        for (var i = 0; i < 200; i++)
        {
            if (i == 50)
            {
                await backends[1].Process.DisposeAsync();
            }
            using var response = await client.GetAsync($"http://{http}/");
            if (!response.IsSuccessStatusCode)
            {
                failed++;
                lastFailure = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
            }
        }
        Assert.True(failed == 0, $"{failed} failed, last: {lastFailure}\n{node.Output}");

        node.Terminate();
        var exitCode = await node.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.True(exitCode == 0, $"exit code {exitCode}:\n{string.Join("\n", node.Output.Split('\n').TakeLast(25))}");
    }

    [Fact]
    public async Task Secrets_NeverAppearInTheLogAtDebugLevel_NorInCtlOutput()
    {
        const string token = "admin-token-Zq81-secret";
        const string affinityKey = "affinity-key-Xw42-secret-value";
        await using var cleanup = new ProcessGroup();
        var (_, backendPort) = await StartBackendAsync(cleanup, "a");
        var node = StartNode1OnFreePorts(cleanup,
            "--set", "akka.loglevel=DEBUG",
            "--set", "akka.stdout-loglevel=DEBUG",
            "--set", $"balancer.node.admin.token={token}",
            "--set", $"balancer.node.affinity-key={affinityKey}",
            "--set", "balancer.pools.app.affinity.mode=cookie",
            "--set", "balancer.pools.app.backends.b=null",
            "--set", "balancer.pools.app.backends.c=null",
            "--set", $"balancer.pools.app.backends.a=127.0.0.1:{backendPort}");
        await node.WaitForOutputAsync(" ready", StartTimeout);
        var admin = Regex.Match(node.Output, @"admin API on http://(\S+) ").Groups[1].Value;
        var http = FrontendEndPoint(node.Output, "web-node1");

        // Refused and accepted changes, a session cookie issued, and ctl output in both cases.
        var refused = cleanup.Add(NodeProcess.Start("ctl", admin, "--token", "wrong-token", "backend", "drain", "app/a"));
        Assert.Equal(1, await refused.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        var accepted = cleanup.Add(NodeProcess.Start("ctl", admin, "--token", token, "--json", "backend", "ready", "app/a"));
        Assert.Equal(0, await accepted.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        using (var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }))
        {
            using var response = await client.GetAsync($"http://{http}/");
            Assert.Contains(response.Headers.GetValues("Set-Cookie"), c => c.StartsWith("BALANCER=", StringComparison.Ordinal));
        }
        node.Terminate();
        await node.WaitForExitAsync(TimeSpan.FromSeconds(30));

        Assert.Contains("[DEBUG]", node.Output);
        foreach (var output in new[] { node.Output, refused.Output, accepted.Output })
        {
            Assert.DoesNotContain(token, output);
            Assert.DoesNotContain(affinityKey, output);
        }
    }

    [Fact]
    public async Task Sigterm_StopsAccepting_LetsRequestsInFlightFinish_ThenExits()
    {
        await using var cleanup = new ProcessGroup();
        var (node, backend) = await StartNode1WithBackendAAsync(cleanup);
        var http = FrontendEndPoint(node.Output, "web-node1");
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };
        // A WebSocket open before the stop is a request in flight as well.
        using var socket = new System.Net.WebSockets.ClientWebSocket();
        using var socketTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await socket.ConnectAsync(new Uri($"ws://{http}/ws"), socketTimeout.Token);
        var buffer = new byte[256];
        await socket.ReceiveAsync(buffer, socketTimeout.Token);
        await client.PostAsync($"http://127.0.0.1:{backend.Port}/control/slow?ms=7000", null);

        // Three requests in flight, each taking 7 s at the backend (longer than any fixed grace); then SIGTERM.
        var inFlight = Enumerable.Range(0, 3).Select(i => client.GetAsync($"http://{http}/slow-{i}")).ToList();
        await Task.Delay(500);
        var stopping = System.Diagnostics.Stopwatch.StartNew();
        node.Terminate();

        // At once, no new connection is accepted...
        await Eventually.Holds(() => Assert.Throws<System.Net.Sockets.SocketException>(() =>
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            socket.Connect(http);
        }), TimeSpan.FromSeconds(2));
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(2.5), $"still accepting {stopping.Elapsed.TotalSeconds:0.0} s after SIGTERM");
        // ...the open WebSocket still carries messages while the node drains...
        await socket.SendAsync("draining?"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, socketTimeout.Token);
        var echo = await socket.ReceiveAsync(buffer, socketTimeout.Token);
        Assert.Equal("draining?", System.Text.Encoding.UTF8.GetString(buffer, 0, echo.Count));
        await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, socketTimeout.Token);
        // ...and the requests already in flight are answered, and only then does the node stop.
        foreach (var request in inFlight)
        {
            using var response = await request;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(0, await node.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("no longer accepting; letting", node.Output);
    }

    /// <summary>
    /// SIGTERM while clients open new connections all the time, on an HTTP and a TCP frontend: a
    /// client whose connection the node completed gets its answer. Closing a listener outright
    /// resets the connections in its accept queue, requests already sent with them; a client has
    /// to be refused (and try another node) or served, never cut.
    /// </summary>
    [Fact]
    public async Task Sigterm_UnderAStreamOfNewConnections_EveryConnectionMadeIsAnswered()
    {
        await using var cleanup = new ProcessGroup();
        var (node, backend) = await StartNode1WithBackendAAsync(cleanup);
        var endPoints = new[] { FrontendEndPoint(node.Output, "web-node1"), FrontendEndPoint(node.Output, "raw-node1") };
        using var stop = new CancellationTokenSource();
        var answered = 0;
        var refused = 0;
        var cut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        async Task ConnectAgainAndAgainAsync(IPEndPoint endPoint)
        {
            var request = System.Text.Encoding.ASCII.GetBytes("GET /stop-race HTTP/1.1\r\nHost: balancer\r\nConnection: close\r\n\r\n");
            while (!stop.IsCancellationRequested)
            {
                using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                using var connectWithin = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                try
                {
                    await socket.ConnectAsync(endPoint, connectWithin.Token);
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException)
                {
                    Interlocked.Increment(ref refused);
                    await Task.Delay(10);
                    continue;
                }
                var answer = new MemoryStream();
                try
                {
                    await socket.SendAsync(request);
                    var buffer = new byte[4096];
                    using var answerWithin = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    int read;
                    while ((read = await socket.ReceiveAsync(buffer, answerWithin.Token)) > 0)
                    {
                        answer.Write(buffer, 0, read);
                    }
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException)
                {
                    cut.Enqueue($"{endPoint}: {e.Message} after {answer.Length} bytes");
                    continue;
                }
                var text = System.Text.Encoding.ASCII.GetString(answer.ToArray());
                if (text.StartsWith("HTTP/1.1 200", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref answered);
                }
                else
                {
                    cut.Enqueue($"{endPoint}: answered \"{text.Split('\n')[0].Trim()}\"");
                }
            }
        }
        var clients = endPoints.SelectMany(e => Enumerable.Range(0, 12).Select(_ => Task.Run(() => ConnectAgainAndAgainAsync(e)))).ToList();
        await Task.Delay(TimeSpan.FromSeconds(2));
        var answeredBefore = answered;
        node.Terminate();
        Assert.Equal(0, await node.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        stop.Cancel();
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(20));

        Console.WriteLine($"SIGTERM under a stream of new connections: {answered} answered ({answeredBefore} before SIGTERM), {refused} refused, {cut.Count} cut");
        Assert.True(answeredBefore > 50 && refused > 0, $"{answeredBefore} answered before SIGTERM, {refused} refused: no stream of connections met the stop");
        Assert.True(cut.IsEmpty, $"{cut.Count} connection(s) made but not answered ({answered} answered, {refused} refused):\n{string.Join("\n", cut.Take(10))}");
    }

    [Theory]
    [InlineData("balancer.frontends.web-node1.bind")]
    [InlineData("balancer.node.admin.bind")]
    public async Task Run_ListenerPortTaken_OneLineAndExit1WithinTwoSeconds_BeforeJoiningOrOpeningAnything(string key)
    {
        // Another process holds the port, without SO_REUSEPORT, as any foreign server would.
        using var holder = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var taken = ((IPEndPoint)holder.LocalEndpoint).Port;
        await using var cleanup = new ProcessGroup();
        var started = System.Diagnostics.Stopwatch.StartNew();
        var node = StartNode1OnFreePorts(cleanup, "--set", $"{key}=127.0.0.1:{taken}");
        var exitCode = await node.WaitForExitAsync(TimeSpan.FromSeconds(30));
        var elapsed = started.Elapsed;

        Assert.Equal(1, exitCode);
        Assert.True(elapsed < TimeSpan.FromSeconds(2), $"exited after {elapsed.TotalSeconds:0.0} s:\n{node.Output}");
        var errorLine = Assert.Single(node.Errors.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Equal($"balancer: {key}: cannot listen on 127.0.0.1:{taken}: the address is already in use (another process listens there)", errorLine);
        // Nothing was opened and no cluster was joined: the node stopped before its actor system existed.
        Assert.DoesNotContain("listening", node.Output);
        Assert.DoesNotContain("Welcome", node.Output);
        Assert.DoesNotContain("Akka", node.Output);
    }

    [Fact]
    public async Task Run_GrpcWebSocketsAndRoutes_ThroughANodeProcess_ToBackendProcesses()
    {
        await using var cleanup = new ProcessGroup();
        var a = await StartBackendAsync(cleanup, "a");
        var b = await StartBackendAsync(cleanup, "b");
        var extra = Path.Combine(Path.GetTempPath(), $"balancer-l7-{Guid.NewGuid():N}.conf");
        File.WriteAllText(extra, $$"""
            balancer.pools.app.backends { a = "127.0.0.1:{{a.Port}}", b = null, c = null }
            balancer.pools.grpc {
              protocol = http2
              backends { a = "127.0.0.1:{{a.Port}}", b = "127.0.0.1:{{b.Port}}" }
            }
            balancer.pools.only-b.backends.b = "127.0.0.1:{{b.Port}}"
            balancer.frontends.web-node1.routes = [
              { name = grpc, headers = ["content-type=~^application/grpc"], pool = grpc }
              { name = b, hosts = ["b.example.com"], path-prefix = "/b/", rewrite-prefix = "/", pool = only-b, response-headers.set { X-Route = b } }
            ]
            """);
        try
        {
            var node = StartNode1OnFreePorts(cleanup, "--config", extra);
            await node.WaitForOutputAsync(" ready", StartTimeout);
            var web = FrontendEndPoint(node.Output, "web-node1");

            using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://{web}");
            var grpc = new Balancer.Node.Backend.Rpc.Demo.DemoClient(channel);
            var served = new HashSet<string>();
            for (var i = 0; i < 4; i++)
            {
                served.Add((await grpc.HelloAsync(new Balancer.Node.Backend.Rpc.HelloRequest { Name = "n" }, deadline: DateTime.UtcNow.AddSeconds(10))).Backend);
            }
            Assert.Equal(["a", "b"], served.Order());
            using (var call = grpc.Chat(deadline: DateTime.UtcNow.AddSeconds(10)))
            {
                await call.RequestStream.WriteAsync(new Balancer.Node.Backend.Rpc.ChatMessage { Text = "hi" });
                Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
                Assert.Equal("hi", call.ResponseStream.Current.Text);
                await call.RequestStream.CompleteAsync();
            }

            using var socket = new System.Net.WebSockets.ClientWebSocket();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await socket.ConnectAsync(new Uri($"ws://{web}/ws"), timeout.Token);
            var buffer = new byte[256];
            var greeting = await socket.ReceiveAsync(buffer, timeout.Token);
            Assert.Equal("hello from a", System.Text.Encoding.UTF8.GetString(buffer, 0, greeting.Count));

            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{web}/b/path");
            request.Headers.Host = "b.example.com";
            using var response = await http.SendAsync(request);
            Assert.Equal("b /path\n", await response.Content.ReadAsStringAsync());
            Assert.Equal("b", response.Headers.GetValues("X-Route").Single());
            Assert.Equal("a /b/path\n", await http.GetStringAsync($"http://{web}/b/path"));

            await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            // Kestrel's warning that such a listener takes HTTP/1.1 only is not true of a frontend's.
            Assert.DoesNotContain("HTTP/2 is not enabled", node.Output);
        }
        finally
        {
            File.Delete(extra);
        }
    }

    [Fact]
    public async Task Run_GrpcThroughATlsFrontend_ToHttps2BackendProcessesThatRequireAClientCertificate()
    {
        using var certificates = new TestCertificates();
        var backendCertificate = certificates.Issue("backend.test");
        var nodeClient = certificates.Issue("balancer.test", serverAuth: false, clientAuth: true);
        var frontendCertificate = certificates.Issue("lb.test");
        await using var cleanup = new ProcessGroup();
        var backends = new List<(NodeProcess Process, int Port)>();
        foreach (var name in new[] { "a", "b" })
        {
            var process = cleanup.Add(NodeProcess.Start("backend", "--port", "0", "--name", name,
                "--certificate", backendCertificate.Certificate, "--key", backendCertificate.Key, "--client-ca", certificates.AuthorityFile));
            await process.WaitForOutputAsync("listening on", StartTimeout);
            Assert.Contains("listening on https://127.0.0.1:", process.Output);
            Assert.Contains("(client certificates required)", process.Output);
            backends.Add((process, int.Parse(Regex.Match(process.Output, @"127\.0\.0\.1:(\d+)").Groups[1].Value)));
        }

        // The backends refuse a TLS client without a certificate their CA issued.
        using (var bare = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true },
        }) { Timeout = TimeSpan.FromSeconds(10) })
        {
            await Assert.ThrowsAsync<HttpRequestException>(() => bare.GetStringAsync($"https://127.0.0.1:{backends[0].Port}/"));
        }

        var extra = Path.Combine(certificates.Directory, "secure.conf");
        File.WriteAllText(extra, TestCertificates.MutualTlsPoolBehindTlsFrontend(certificates, "secure", "secure",
            (nodeClient.Certificate, nodeClient.Key), (frontendCertificate.Certificate, frontendCertificate.Key), backends[0].Port, backends[1].Port));
        var node = StartNode1OnFreePorts(cleanup, "--config", extra);
        await node.WaitForOutputAsync(" ready", StartTimeout);
        var secure = FrontendEndPoint(node.Output, "secure");

        using var handler = certificates.TrustingHandler();
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"https://{secure}", new Grpc.Net.Client.GrpcChannelOptions { HttpHandler = handler });
        var grpc = new Balancer.Node.Backend.Rpc.Demo.DemoClient(channel);
        // Health checks speak https2 with the node's client certificate as well: both backends serve.
        var served = new HashSet<string>();
        await Eventually.Holds(async () =>
        {
            served.Add((await grpc.HelloAsync(new Balancer.Node.Backend.Rpc.HelloRequest { Name = "tls" }, deadline: DateTime.UtcNow.AddSeconds(10))).Backend);
            Assert.Equal(["a", "b"], served.Order());
        }, TimeSpan.FromSeconds(20));

        using (var stream = grpc.Count(new Balancer.Node.Backend.Rpc.CountRequest { Count = 3 }, deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            var numbers = new List<int>();
            while (await stream.ResponseStream.MoveNext(CancellationToken.None))
            {
                numbers.Add(stream.ResponseStream.Current.Number);
            }
            Assert.Equal([1, 2, 3], numbers);
        }
        using (var sum = grpc.Sum(deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            for (var n = 1; n <= 10; n++)
            {
                await sum.RequestStream.WriteAsync(new Balancer.Node.Backend.Rpc.Number { Value = n });
            }
            await sum.RequestStream.CompleteAsync();
            Assert.Equal(55, (await sum.ResponseAsync).Sum);
        }
        // The deadline travels as grpc-timeout through both TLS hops.
        var late = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => grpc.HelloAsync(new Balancer.Node.Backend.Rpc.HelloRequest { Name = "slow", DelayMs = 5000 }, deadline: DateTime.UtcNow.AddMilliseconds(400)).ResponseAsync);
        Assert.Equal(Grpc.Core.StatusCode.DeadlineExceeded, late.StatusCode);
        using (var chat = grpc.Chat(deadline: DateTime.UtcNow.AddSeconds(10)))
        {
            await chat.RequestStream.WriteAsync(new Balancer.Node.Backend.Rpc.ChatMessage { Text = "over mTLS" });
            Assert.True(await chat.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal("over mTLS", chat.ResponseStream.Current.Text);
            await chat.RequestStream.CompleteAsync();
        }
    }

    private static IPEndPoint FrontendEndPoint(string output, string frontend)
    {
        var match = Regex.Match(output, $@"frontend {Regex.Escape(frontend)} \((?:http|tcp)\) on (\S+) ");
        Assert.True(match.Success, $"no listening line for {frontend} in:\n{output}");
        return IPEndPoint.Parse(match.Groups[1].Value.TrimEnd(','));
    }

    private sealed class ProcessGroup : IAsyncDisposable
    {
        private readonly List<NodeProcess> _processes = new();

        public NodeProcess Add(NodeProcess process)
        {
            _processes.Add(process);
            return process;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _processes)
            {
                await process.DisposeAsync();
            }
        }
    }
}
