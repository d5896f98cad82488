using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Frontends;

/// <summary>Clients that try to hurt a frontend: slow headers, huge headers, one host flooding connections.</summary>
[Collection(SerialCollection.Name)]
public class HostileInputTests
{
    /// <summary>How plain HTTP/1.1 requests cross the frontends these tests start; <see cref="HostileInputTestsOnYarp"/> runs them all again on Kestrel and YARP.</summary>
    protected virtual HttpEngine Engine => HttpEngine.FastPath;

    private Task<BalancerHost> StartAsync(string hocon) => BalancerHost.StartAsync(hocon, Engine);

    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task Slowloris_CutOffWithinTheHeaderTimeout_WhileOthersAreServed()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app, request-headers-timeout = 2s }
            balancer.pools.app { health-check.kind = none, {{backends.Hocon()}} }
            """);
        using var slow = await TcpClients.ConnectAsync(host.EndPoint("web"));
        await slow.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n"));
        var started = Stopwatch.StartNew();
        // Cut off when Kestrel answers 408, closes or resets: whatever reaches the client first.
        var closed = Task.Run(async () =>
        {
            try
            {
                await slow.ReceiveAsync(new byte[1024]);
            }
            catch (SocketException)
            {
            }
            return started.Elapsed;
        });
        var header = Encoding.ASCII.GetBytes("X-Slow: " + new string('a', 60));
        var served = 0;
        for (var i = 0; i < header.Length && !closed.IsCompleted && started.Elapsed < TimeSpan.FromSeconds(10); i++)
        {
            try
            {
                await slow.SendAsync(header.AsMemory(i, 1));
            }
            catch (SocketException)
            {
                break;
            }
            // Everyone else keeps being served meanwhile.
            using var response = await Client.GetAsync(host.Uri("web"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            served++;
            await Task.WhenAny(closed, Task.Delay(1000));
        }
        var cutOff = await closed.WaitAsync(TimeSpan.FromSeconds(10));
        // Within the configured 2 s (plus scheduling slack), not Kestrel's 2 s + 1-2 s heartbeat.
        Assert.InRange(cutOff, TimeSpan.FromSeconds(1.9), TimeSpan.FromSeconds(2.5));
        Assert.True(served >= 2);
    }

    [Fact]
    public async Task OversizedHeaders_Get431_TooManyHeaders_Get431_LongRequestLine_Gets414()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app, max-request-header-bytes = 8192, max-request-headers = 20, max-request-line-bytes = 1024 }
            balancer.pools.app { health-check.kind = none, {{backends.Hocon()}} }
            """);
        using (var big = new HttpRequestMessage(HttpMethod.Get, host.Uri("web")))
        {
            big.Headers.Add("X-Big", new string('x', 10_000));
            using var response = await Client.SendAsync(big);
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        }
        using (var many = new HttpRequestMessage(HttpMethod.Get, host.Uri("web")))
        {
            for (var i = 0; i < 30; i++)
            {
                many.Headers.Add($"X-H{i}", "1");
            }
            using var response = await Client.SendAsync(many);
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        }
        using (var longLine = await Client.GetAsync(host.Uri("web", "/" + new string('p', 2000))))
        {
            Assert.Equal(HttpStatusCode.RequestUriTooLong, longLine.StatusCode);
        }
        using var normal = await Client.GetAsync(host.Uri("web"));
        Assert.Equal(HttpStatusCode.OK, normal.StatusCode);
    }

    [Fact]
    public async Task ConnectionFloodFromOneAddress_RefusedBeyondItsCap_OthersUnaffected_TcpAndHttp()
    {
        await using var backends = await BackendSet.StartAsync("a");
        using var echo = new RawTcpServer();
        await using var host = await StartAsync($$"""
            balancer.frontends {
              raw { mode = tcp, bind = "127.0.0.1:0", pool = raw, max-connections-per-client = 5 }
              web { bind = "127.0.0.1:0", pool = app, max-connections-per-client = 5 }
            }
            balancer.pools {
              raw { health-check.kind = none, backends.e = "127.0.0.1:{{echo.Port}}" }
              app { health-check.kind = none, {{backends.Hocon()}} }
            }
            """);
        foreach (var frontend in new[] { "raw", "web" })
        {
            var flooder = IPAddress.Parse("127.0.0.2");
            var held = new List<Socket>();
            try
            {
                for (var i = 0; i < 5; i++)
                {
                    held.Add(await ConnectFromAsync(flooder, host.EndPoint(frontend)));
                }
                // Each held connection is seen through before the sixth: Kestrel runs connection
                // middleware on the thread pool in no fixed order, so an unanswered one could be
                // the one counted sixth.
                foreach (var socket in held)
                {
                    if (frontend == "raw")
                    {
                        await TcpClients.AssertEchoAsync(socket);
                    }
                    else
                    {
                        await socket.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
                        var answer = new byte[4096];
                        var read = await socket.ReceiveAsync(answer.AsMemory()).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                        Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(answer, 0, read));
                    }
                }
                // The sixth from the same address is closed at once...
                Assert.Empty(await ExchangeAsync(flooder, host.EndPoint(frontend), frontend == "raw" ? "x" : "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
                // ...while another address is served.
                if (frontend == "raw")
                {
                    using var other = await TcpClients.ConnectAsync(host.EndPoint(frontend));
                    await TcpClients.AssertEchoAsync(other);
                }
                else
                {
                    using var response = await Client.GetAsync(host.Uri(frontend));
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                }
            }
            finally
            {
                held.ForEach(s => s.Dispose());
            }
            // Closing the flood frees the address's slots again.
            await Eventually.Holds(async () =>
            {
                using var again = await ConnectFromAsync(flooder, host.EndPoint(frontend));
                if (frontend == "raw")
                {
                    await TcpClients.AssertEchoAsync(again);
                }
                else
                {
                    await again.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
                    Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(await TcpClients.ReadToEndAsync(again)));
                }
            });
            Assert.True(host.Extension.FrontendCounters(frontend).RefusedPerClient >= 1);
        }
    }

    private static async Task<Socket> ConnectFromAsync(IPAddress source, IPEndPoint target)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(source, 0));
        await socket.ConnectAsync(target).WaitAsync(TimeSpan.FromSeconds(10));
        return socket;
    }

    /// <summary>Connects, sends, reads to the end; a connection reset at any step reads as nothing.</summary>
    private static async Task<byte[]> ExchangeAsync(IPAddress source, IPEndPoint target, string request)
    {
        try
        {
            using var socket = await ConnectFromAsync(source, target);
            await socket.SendAsync(Encoding.ASCII.GetBytes(request));
            return await TcpClients.ReadToEndAsync(socket).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (SocketException)
        {
            return [];
        }
    }
}

/// <summary>The tests of <see cref="HostileInputTests"/> with plain HTTP/1.1 through Kestrel and YARP instead of the fast path.</summary>
[Collection(SerialCollection.Name)]
public sealed class HostileInputTestsOnYarp : HostileInputTests
{
    protected override HttpEngine Engine => HttpEngine.Yarp;
}
