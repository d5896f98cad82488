using System.Net;
using System.Net.Sockets;
using Balancer.Tests.TestSupport;
using static Balancer.Tests.TestSupport.TcpClients;

namespace Balancer.Tests.Frontends;

/// <summary>The TCP frontend with connections spliced on Balancer's own event loops (the default on Linux).</summary>
public class TcpFrontendTests
{
    /// <summary>How the frontend splices: its setting.</summary>
    protected virtual string Splicing => "event-loop = on";

    private string Config(string backends, string frontendExtra = "", string poolExtra = "") => $$"""
        balancer {
          frontends.raw { mode = tcp, bind = "127.0.0.1:0", pool = app, {{Splicing}}, {{frontendExtra}} }
          pools.app {
            health-check.kind = none
            {{poolExtra}}
            {{backends}}
          }
        }
        """;

    [Fact]
    public async Task Splice_HttpThroughTcpFrontend_RoundRobinPerConnection()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync(Config(backends.Hocon()));
        var seen = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            // A fresh connection each time: a TCP frontend balances connections, not requests.
            using var client = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero, UseProxy = false });
            using var response = await client.GetAsync($"http://{host.EndPoint("raw")}/tcp");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            seen.Add(response.Headers.GetValues("X-Backend").Single());
        }
        Assert.Equal(["a", "b", "c", "a", "b", "c"], seen);
    }

    [Fact]
    public async Task Splice_HalfClose_PassedOnBothWays()
    {
        using var server = new RawTcpServer(collectUntilEof: true);
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\""));
        using var socket = await ConnectAsync(host);
        var payload = new byte[1024 * 1024 + 3];
        new Random(3).NextBytes(payload);
        await socket.SendAsync(payload);
        // The backend answers only after it sees our end of stream: the half-close must travel.
        socket.Shutdown(SocketShutdown.Send);
        var reply = await ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(15));
        Array.Reverse(payload);
        Assert.Equal(payload, reply);
    }

    [Fact]
    public async Task Splice_LargeInteractiveTransfer_EchoedIntact()
    {
        using var server = new RawTcpServer();
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\""));
        using var socket = await ConnectAsync(host);
        var payload = new byte[2 * 1024 * 1024];
        new Random(5).NextBytes(payload);
        var sending = Task.Run(async () =>
        {
            for (var sent = 0; sent < payload.Length; sent += 64 * 1024)
            {
                await socket.SendAsync(payload.AsMemory(sent, Math.Min(64 * 1024, payload.Length - sent)));
            }
        });
        var received = new byte[payload.Length];
        var total = 0;
        while (total < received.Length)
        {
            var read = await socket.ReceiveAsync(received.AsMemory(total)).AsTask().WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(read > 0, "connection closed early");
            total += read;
        }
        await sending;
        Assert.Equal(payload, received);
    }

    [Fact]
    public async Task Splice_SlowReader_GetsALargeAnswerWholeThenTheEndOfStream()
    {
        var answer = new byte[16 * 1024 * 1024 + 5];
        new Random(7).NextBytes(answer);
        // The backend writes it all and closes at once: the splice holds what the client does not
        // take yet, and passes the end of stream on only after it.
        using var server = new RawTcpServer(async socket =>
        {
            using var _ = socket;
            await socket.ReceiveAsync(new byte[1]);
            await socket.SendAsync(answer);
            socket.Shutdown(SocketShutdown.Send);
            await socket.ReceiveAsync(new byte[1]);
        });
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\""));
        using var socket = await ConnectAsync(host);
        // A fixed window (no autotuning): more of the answer than the kernel holds waits in the splice.
        socket.ReceiveBufferSize = 64 * 1024;
        await socket.SendAsync(new byte[] { 1 });
        await Task.Delay(1000);
        var received = await ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(answer.Length, received.Length);
        Assert.Equal(answer, received);
    }

    [Fact]
    public async Task Splice_BackendResets_TheClientSeesAReset_NotAnEndOfStream()
    {
        using var server = new RawTcpServer(async socket =>
        {
            await socket.ReceiveAsync(new byte[1]);
            await socket.SendAsync(new byte[] { 7 });
            socket.LingerState = new LingerOption(true, 0);
            socket.Dispose();
        });
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\""));
        using var socket = await ConnectAsync(host);
        await socket.SendAsync(new byte[] { 1 });
        var buffer = new byte[16];
        Assert.Equal(1, await socket.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(10)));
        // A clean end of stream here would pass a cut-off answer on as whole.
        var error = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            while (await socket.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(10)) > 0)
            {
            }
        });
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
    }

    [Fact]
    public async Task Stop_EndsSplicedConnections_AndCountsThemClosed()
    {
        using var server = new RawTcpServer();
        // Connections still open when the drain ends are closed by the frontend.
        var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\"") + "\nbalancer.node.drain-timeout = 1s\n");
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var socket = await ConnectAsync(host);
                sockets.Add(socket);
                await AssertEchoAsync(socket);
            }
            var counters = host.Extension.FrontendCounters("raw");
            Assert.Equal(3, counters.Open);
            var stopping = host.DisposeAsync().AsTask();
            foreach (var socket in sockets)
            {
                Assert.Empty(await ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(30)));
            }
            await stopping.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, counters.Open);
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
            await host.DisposeAsync();
        }
    }

    [Fact]
    public async Task Splice_IdleConnection_ClosedAfterIdleTimeout()
    {
        using var server = new RawTcpServer();
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\"", "idle-timeout = 600ms"));
        using var socket = await ConnectAsync(host);
        await socket.SendAsync(new byte[] { 1 });
        Assert.Equal(1, await socket.ReceiveAsync(new byte[1]));
        var started = DateTime.UtcNow;
        var closed = await ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(10));
        var waited = DateTime.UtcNow - started;
        Assert.Empty(closed);
        Assert.InRange(waited, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Accept_BeyondMaxConnections_Refused()
    {
        using var server = new RawTcpServer();
        await using var host = await BalancerHost.StartAsync(Config($"backends.r = \"127.0.0.1:{server.Port}\"", "max-connections = 2"));
        using var first = await ConnectAsync(host);
        using var second = await ConnectAsync(host);
        await AssertEchoAsync(first);
        await AssertEchoAsync(second);

        // Refused with a reset: seen either by the connect itself or by the first read.
        try
        {
            using var third = await ConnectAsync(host);
            Assert.Empty(await ReadToEndAsync(third).WaitAsync(TimeSpan.FromSeconds(10)));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
        }
        Assert.Equal(2, server.Accepted);

        // A slot frees up once a connection has closed on both sides.
        first.Dispose();
        for (var attempt = 0; ; attempt++)
        {
            await Task.Delay(100);
            try
            {
                using var fourth = await ConnectAsync(host);
                await AssertEchoAsync(fourth);
                break;
            }
            catch (Exception) when (attempt < 50)
            {
            }
        }
    }

    [Fact]
    public async Task Connect_BackendRefuses_RetriedOnAnother()
    {
        using var server = new RawTcpServer();
        await using var host = await BalancerHost.StartAsync(Config(
            $"backends {{\n dead = \"127.0.0.1:{Ports.Closed()}\"\n live = \"127.0.0.1:{server.Port}\"\n}}", poolExtra: "retries = 1"));
        for (var i = 0; i < 10; i++)
        {
            using var socket = await ConnectAsync(host);
            await AssertEchoAsync(socket);
        }
        Assert.Equal(10, server.Accepted);
    }

    [Fact]
    public async Task Connect_BackendConnectTimesOut_RetriedOnAnother_AndABackendNamedByHostWorks()
    {
        using var server = new RawTcpServer();
        using var stuck = await StuckListener.StartAsync();
        await using var host = await BalancerHost.StartAsync(Config(
            $"backends {{\n stuck = \"127.0.0.1:{stuck.Port}\"\n named = \"localhost:{server.Port}\"\n}}",
            poolExtra: "algorithm = first, connect-timeout = 300ms, retries = 1"));
        for (var i = 0; i < 3; i++)
        {
            var started = System.Diagnostics.Stopwatch.StartNew();
            using var socket = await ConnectAsync(host);
            await AssertEchoAsync(socket);
            Assert.InRange(started.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        }
        Assert.Equal(3, server.Accepted);
    }

    [Fact]
    public async Task Connect_NoBackendAccepts_ClientConnectionClosed()
    {
        await using var host = await BalancerHost.StartAsync(Config($"backends.dead = \"127.0.0.1:{Ports.Closed()}\""));
        using var socket = await ConnectAsync(host);
        Assert.Empty(await ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Bind_AddressTaken_ReportedThenRetriedUntilFree()
    {
        using var server = new RawTcpServer();
        var squatter = new Socket(SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        squatter.Listen();
        var port = ((IPEndPoint)squatter.LocalEndPoint!).Port;
        var config = Akka.Configuration.ConfigurationFactory.ParseString($$"""
            balancer {
              frontends.raw { mode = tcp, bind = "127.0.0.1:{{port}}", pool = app }
              pools.app { health-check.kind = none, backends.r = "127.0.0.1:{{server.Port}}" }
            }
            """).WithFallback(BalancerHost.ClusterOfOne);
        var system = Akka.Actor.ActorSystem.Create("balancer-bind", config);
        try
        {
            // Frontends open once the node is a member: it joins itself.
            Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress);
            var balancer = BalancerExtension.Get(system);
            var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => balancer.FrontendsStarted.WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.StartsWith("frontend raw: ", failure.Message);

            squatter.Dispose();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (!balancer.FrontendEndPoints.ContainsKey("raw"))
            {
                Assert.True(DateTime.UtcNow < deadline, "the frontend did not listen once the address was free");
                await Task.Delay(100);
            }
            using var socket = await TcpClients.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
            await AssertEchoAsync(socket);
        }
        finally
        {
            squatter.Dispose();
            await system.Terminate();
        }
    }

    private static Task<Socket> ConnectAsync(BalancerHost host) => TcpClients.ConnectAsync(host.EndPoint("raw"));
}

/// <summary>The same tests with connections spliced by .NET's async sockets (<c>event-loop = off</c>, and where there is no event loop).</summary>
public sealed class TcpFrontendTestsOnAsyncSockets : TcpFrontendTests
{
    protected override string Splicing => "event-loop = off";
}
