using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Balancer.Frontends;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Frontends;

/// <summary>
/// The HTTP/1.1 fast path on its own: which requests it takes, its kept-alive backend connections,
/// how it passes on each framing of a response and refuses a malformed one, and its timeouts.
/// Real sockets on both sides; the backend is a raw one that answers exactly the bytes given.
/// </summary>
[Collection(SerialCollection.Name)]
public class Http1FastPathTests
{
    /// <summary>Where the fast path's client and backend connections live: the frontends' setting (on: Balancer's event loops).</summary>
    protected virtual string BackendSockets => "balancer.frontend-defaults.event-loop = on";

    /// <summary>True where the client connections are taken by Kestrel's transport on the event loops.</summary>
    protected virtual bool ClientsOnTheEventLoop => OperatingSystem.IsLinux();

    private Task<BalancerHost> StartHostAsync(string hocon) => BalancerHost.StartAsync(hocon + "\n" + BackendSockets + "\n");

    private static string Config(int backendPort, string poolExtra = "") => $$"""
        balancer.frontends.web { bind = "127.0.0.1:0", pool = app, forwarded-headers = off }
        balancer.pools.app { health-check.kind = none, retries = 0, backends.rec = "127.0.0.1:{{backendPort}}" {{poolExtra}} }
        """;

    [Fact]
    public async Task PlainRequests_TakeTheFastPath_AndEveryOtherForm_GoesThroughYarp_Answered()
    {
        using var backend = new RecordingBackend();
        await using var host = await StartHostAsync(Config(backend.Port));
        var counters = host.Extension.FrontendCounters("web");
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));

        await SendAsync(client, "GET /a?b=c HTTP/1.1\r\nHost: lb.test\r\nAccept: */*\r\n\r\n");
        Assert.Equal(200, (await ReadResponseAsync(client)).Status);
        await SendAsync(client, "POST /form HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello");
        Assert.Equal(200, (await ReadResponseAsync(client)).Status);
        // Keep-Alive is as plain as Connection: keep-alive, and neither goes past this hop.
        await SendAsync(client, "GET /k HTTP/1.1\r\nHost: lb.test\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n");
        Assert.Equal(200, (await ReadResponseAsync(client)).Status);
        Assert.Equal(3, counters.FastPath);
        Assert.Equal(
            ["GET /a?b=c HTTP/1.1\r\nHost: lb.test\r\nAccept: */*\r\n\r\n", "POST /form HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello",
             "GET /k HTTP/1.1\r\nHost: lb.test\r\n\r\n"],
            backend.Requests.ToArray());

        // Each of these is another form: answered by Kestrel and YARP, on a connection of its own
        // (once Kestrel has a connection, it keeps it). Kestrel refuses a byte above ASCII in a header.
        (string Request, int Status)[] others =
        [
            ("GET / HTTP/1.0\r\nHost: lb.test\r\n\r\n", 200),
            ("POST / HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200),
            ("GET /a%20b HTTP/1.1\r\nHost: lb.test\r\n\r\n", 200),
            ("GET /a/../b HTTP/1.1\r\nHost: lb.test\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: lb.test\r\nExpect: 100-continue\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: lb.test\r\nX-Latin: caf\u00e9\r\n\r\n", 400),
        ];
        foreach (var (request, status) in others)
        {
            using var other = await TcpClients.ConnectAsync(host.EndPoint("web"));
            await SendAsync(other, request);
            Assert.Equal(status, (await ReadResponseAsync(other)).Status);
        }
        Assert.Equal(3, counters.FastPath);
        Assert.Equal(3 + others.Count(o => o.Status == 200), counters.Accepted);
        // YARP dropped the header the Connection header named, as the fast path would have to.
        Assert.DoesNotContain(backend.Requests, r => r.Contains("X-Hop", StringComparison.Ordinal));
    }

    [Fact]
    public async Task BackendConnections_AreKeptAlive_AndOneTheBackendClosed_IsReplacedWithoutAnError()
    {
        using var backend = new RecordingBackend();
        await using var host = await StartHostAsync(Config(backend.Port));
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));
        for (var i = 0; i < 20; i++)
        {
            await SendAsync(client, $"GET /{i} HTTP/1.1\r\nHost: lb.test\r\n\r\n");
            Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        }
        Assert.Equal(1, backend.Connections);

        // The backend closes after its answer without saying so: the next request finds the kept
        // connection closed, and goes again on a new one.
        backend.CloseAfter = request => request.StartsWith("GET /last-on-it ", StringComparison.Ordinal);
        await SendAsync(client, "GET /last-on-it HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        Assert.Equal(200, (await ReadResponseAsync(client)).Status);
        await Task.Delay(100);
        await SendAsync(client, "GET /after HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        Assert.Equal(2, backend.Connections);
        Assert.Equal(0, host.Extension.Pools.Find("app")!.Snapshot.Backends[0].Counters.ResponseFailures);
    }

    /// <summary>
    /// A backend's response and what the client must get of it: status, body, whether the head says
    /// chunked; <paramref name="Spoils"/>: the connection that carried it must not carry another.
    /// </summary>
    public sealed record ResponseCase(string Response, int Status, string Body, bool Chunked, string? AbsentHeader = null, bool Spoils = false);

    public static readonly Dictionary<string, ResponseCase> Responses = new()
    {
        ["content-length"] = new("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", false),
        ["chunked, with an extension and a trailer dropped"] = new(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", 200, "hello world", true, "X-Trailer"),
        ["until the close, passed on in chunks"] = new("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", 200, "to the end", true),
        ["HTTP/1.0 until the close"] = new("HTTP/1.0 200 OK\r\n\r\nold", 200, "old", true),
        ["204 without a body"] = new("HTTP/1.1 204 No Content\r\n\r\n", 204, "", false),
        ["304 without a body"] = new("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", 304, "", false),
        ["103 Early Hints read past"] = new("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false),
        ["bytes past the length, never read as the next answer"] = new(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged", 200, "hello", false, Spoils: true),
        ["a body to a 204, never read as the next answer"] = new(
            "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged", 204, "", false, Spoils: true),
        ["hop-by-hop headers dropped"] = new("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\nX-Private: p\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, "X-Private"),
        // Refused: 502, and the connection that carried it is not used again.
        ["content-length and chunked"] = new("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 502, "", false),
        ["two different lengths"] = new("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello", 502, "", false),
        ["a coding besides chunked"] = new("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 502, "", false),
        ["bare LF line ends"] = new("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 502, "", false),
        ["folded header"] = new("HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok", 502, "", false),
        ["space before the colon"] = new("HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", 502, "", false),
        ["101 to a request without an upgrade"] = new("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 502, "", false),
        ["a status that is not three digits"] = new("HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", 502, "", false),
        ["a control byte in a value"] = new("HTTP/1.1 200 OK\r\nX-A: 1\u00012\r\nContent-Length: 2\r\n\r\nok", 502, "", false),
    };

    public static IEnumerable<object[]> ResponseNames => Responses.Keys.Select(name => new object[] { name });

    [Theory]
    [MemberData(nameof(ResponseNames))]
    public async Task BackendResponse_IsPassedOnInOneForm_OrRefused(string name)
    {
        var expected = Responses[name];
        using var backend = new RecordingBackend();
        var closes = !expected.Response.Contains("Content-Length", StringComparison.Ordinal) && !expected.Response.Contains("chunked", StringComparison.Ordinal)
            && expected.Status is not (204 or 304);
        backend.Answer = request => request.StartsWith("GET /case ", StringComparison.Ordinal) ? expected.Response : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        backend.CloseAfter = request => closes && request.StartsWith("GET /case ", StringComparison.Ordinal);
        await using var host = await StartHostAsync(Config(backend.Port));
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));

        await SendAsync(client, "GET /warm HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        await SendAsync(client, "GET /case HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        var response = await ReadResponseAsync(client);
        Assert.Equal(expected.Status, response.Status);
        if (expected.Status != 502)
        {
            Assert.Equal(expected.Body, response.Body);
            Assert.Equal(expected.Chunked, response.Head.Contains("\r\nTransfer-Encoding: chunked\r\n", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain("\r\nConnection:", response.Head, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("\r\nKeep-Alive:", response.Head, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("\r\nDate: ", response.Head, StringComparison.Ordinal);
            if (expected.AbsentHeader is { } absent)
            {
                Assert.DoesNotContain(absent, response.Head + response.Body, StringComparison.Ordinal);
            }
        }
        // The client's connection goes on, and the next request goes over a sound backend connection.
        var before = backend.Connections;
        await SendAsync(client, "GET /after HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        if (expected.Status == 502 || closes || expected.Spoils)
        {
            Assert.True(backend.Connections > before, "the request after went over the connection of a refused or unframed response");
        }
        else
        {
            Assert.Equal(before, backend.Connections);
        }
        Assert.Equal(3, host.Extension.FrontendCounters("web").FastPath);
    }

    [Fact]
    public async Task ChunksReachTheClientAsTheyCome_AHeadGetsNoErrorText_AndALongHostIsForwarded()
    {
        // A stream (server-sent events): the first chunk must not wait for the last.
        var last = new TaskCompletionSource();
        using var stream = new RawTcpServer(async socket =>
        {
            using var _ = socket;
            var buffer = new byte[4096];
            await socket.ReceiveAsync(buffer, SocketFlags.None);
            await socket.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\ne\r\ndata: first\n\n\r\n"), SocketFlags.None);
            await last.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await socket.SendAsync(Encoding.ASCII.GetBytes("d\r\ndata: last\n\n\r\n0\r\n\r\n"), SocketFlags.None);
        });
        using var backend = new RecordingBackend();
        await using var host = await StartHostAsync($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app }
            balancer.frontends.events { bind = "127.0.0.1:0", pool = events }
            balancer.frontends.down { bind = "127.0.0.1:0", pool = down }
            balancer.pools.app { health-check.kind = none, retries = 0, backends.rec = "127.0.0.1:{{backend.Port}}" }
            balancer.pools.events { health-check.kind = none, retries = 0, backends.s = "127.0.0.1:{{stream.Port}}" }
            balancer.pools.down { health-check.kind = none, retries = 0, backends.gone = "127.0.0.1:{{Ports.Closed()}}" }
            """);
        using (var client = await TcpClients.ConnectAsync(host.EndPoint("events")))
        {
            await SendAsync(client, "GET /events HTTP/1.1\r\nHost: lb.test\r\n\r\n");
            var first = new StringBuilder();
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            while (!first.ToString().Contains("data: first", StringComparison.Ordinal))
            {
                var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                Assert.True(read > 0);
                first.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
            last.SetResult();
        }

        // The answer to a HEAD that no backend took has no text: the next answer on the connection starts where it should.
        using (var client = await TcpClients.ConnectAsync(host.EndPoint("down")))
        {
            await SendAsync(client, "HEAD / HTTP/1.1\r\nHost: lb.test\r\n\r\nGET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
            var text = new StringBuilder();
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            while (Regex.Matches(text.ToString(), "HTTP/1.1 502 ").Count < 2 || !text.ToString().EndsWith("answered\n", StringComparison.Ordinal))
            {
                var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                Assert.True(read > 0, "closed after: " + text);
                text.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
            var second = text.ToString().IndexOf("HTTP/1.1 502 ", 1, StringComparison.Ordinal);
            Assert.EndsWith("\r\n\r\n", text.ToString()[..second], StringComparison.Ordinal);
        }

        // A Host near the header limit: forwarded twice over (Host and X-Forwarded-Host), whole.
        var name = new string('h', 5000) + ".test";
        using (var client = await TcpClients.ConnectAsync(host.EndPoint("web")))
        {
            await SendAsync(client, $"GET / HTTP/1.1\r\nHost: {name}\r\n\r\n");
            Assert.Equal(200, (await ReadResponseAsync(client)).Status);
        }
        Assert.Contains(backend.Requests, r => r.Contains($"\r\nHost: {name}\r\n", StringComparison.Ordinal) && r.Contains($"\r\nX-Forwarded-Host: {name}\r\n", StringComparison.Ordinal));
        Assert.All(host.Extension.Pools.Find("app")!.Snapshot.Backends, b => Assert.Equal(0, b.Counters.InFlight));
        Assert.Equal(4, host.Extension.FrontendCounters("web").FastPath + host.Extension.FrontendCounters("events").FastPath + host.Extension.FrontendCounters("down").FastPath);
    }

    [Fact]
    public async Task AChunkedBodyThatBreaksOff_CutsTheClientConnection_AfterWhatWasSent()
    {
        using var backend = new RecordingBackend
        {
            Answer = _ => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            CloseAfter = _ => true,
        };
        await using var host = await StartHostAsync(Config(backend.Port));
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));
        await SendAsync(client, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        var received = await ReadUntilClosedAsync(client);
        Assert.StartsWith("HTTP/1.1 200 ", received, StringComparison.Ordinal);
        Assert.Contains("\r\n5\r\nhello\r\n", received, StringComparison.Ordinal);
        Assert.DoesNotContain("zz", received, StringComparison.Ordinal);
        Assert.DoesNotContain("\r\n0\r\n\r\n", received, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ALargeResponse_ReachesASlowReaderWhole_AndTheConnectionServesTheNextOne()
    {
        const int size = 8 * 1024 * 1024;
        var body = string.Create(size, 0, static (span, _) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (char)('a' + i % 26);
            }
        });
        using var backend = new RecordingBackend
        {
            Answer = request => request.StartsWith("GET /big ", StringComparison.Ordinal)
                ? $"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n{body}"
                : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        await using var host = await StartHostAsync(Config(backend.Port));
        var acceptedBefore = EventLoopTransport.Accepted;
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));
        await SendAsync(client, "GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n");

        // Read slowly at first, so that the response waits in the proxy (its send side paused,
        // the backend's reads with it), then at full speed.
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var headEnd = -1;
        while (headEnd < 0 || received.Length < headEnd + size)
        {
            if (received.Length < 1024 * 1024)
            {
                await Task.Delay(5, timeout.Token);
            }
            int read;
            try
            {
                read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"the response stalled after {received.Length} bytes");
            }
            Assert.True(read > 0, $"the connection closed after {received.Length} bytes");
            received.Write(buffer, 0, read);
            if (headEnd < 0)
            {
                headEnd = Encoding.Latin1.GetString(received.GetBuffer(), 0, (int)Math.Min(received.Length, 4096)).IndexOf("\r\n\r\n", StringComparison.Ordinal) is var at and >= 0 ? at + 4 : -1;
            }
        }
        Assert.Equal(headEnd + size, received.Length);
        Assert.StartsWith("HTTP/1.1 200 ", Encoding.Latin1.GetString(received.GetBuffer(), 0, headEnd), StringComparison.Ordinal);
        Assert.Equal(body, Encoding.Latin1.GetString(received.GetBuffer(), headEnd, size));

        await SendAsync(client, "GET /next HTTP/1.1\r\nHost: lb.test\r\n\r\n");
        Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        Assert.Equal(2, host.Extension.FrontendCounters("web").FastPath);
        if (ClientsOnTheEventLoop)
        {
            Assert.True(EventLoopTransport.Accepted > acceptedBefore, "the client connection was not taken by the event loop transport");
        }
    }

    [Fact]
    public async Task AConnectionCutOff_EndsWithAReset_AndOneClosedGracefully_WithAFin()
    {
        using var backend = new RecordingBackend();
        await using var host = await StartHostAsync(Config(backend.Port).Replace("forwarded-headers = off", "forwarded-headers = off, request-headers-timeout = 500ms", StringComparison.Ordinal));

        // No request within request-headers-timeout: the connection is aborted, and an abort is a
        // reset, as Kestrel's socket transport ends one, not an end of stream that reads as clean.
        // (Half a head would be ended by the fast path's own wait for the rest, with a FIN.)
        using (var slow = await TcpClients.ConnectAsync(host.EndPoint("web")))
        {
            var buffer = new byte[1024];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var reset = await Assert.ThrowsAsync<SocketException>(async () =>
            {
                while (await slow.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
                {
                }
            });
            Assert.Equal(SocketError.ConnectionReset, reset.SocketErrorCode);
        }

        // A response that says it closes the connection: its whole body, then a FIN.
        using var client = await TcpClients.ConnectAsync(host.EndPoint("web"));
        await SendAsync(client, "GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n");
        var received = new StringBuilder();
        var chunk = new byte[4096];
        using var closing = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        int count;
        // A reset would throw here: the end must be a clean end of stream.
        while ((count = await client.ReceiveAsync(chunk, SocketFlags.None, closing.Token)) > 0)
        {
            received.Append(Encoding.Latin1.GetString(chunk, 0, count));
        }
        Assert.StartsWith("HTTP/1.1 200 ", received.ToString(), StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nok", received.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABackendSilentPastTheRequestTimeout_Gets504_AndLargeBodiesStreamThrough()
    {
        using var silent = new RawTcpServer(async socket =>
        {
            using var _ = socket;
            await Task.Delay(TimeSpan.FromSeconds(10));
        });
        using var backend = new RecordingBackend();
        await using var host = await StartHostAsync($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app, forwarded-headers = off }
            balancer.frontends.slow { bind = "127.0.0.1:0", pool = silent }
            balancer.pools.app { health-check.kind = none, retries = 0, backends.rec = "127.0.0.1:{{backend.Port}}" }
            balancer.pools.silent { health-check.kind = none, retries = 0, request-timeout = 500ms, backends.s = "127.0.0.1:{{silent.Port}}" }
            """);
        using (var client = await TcpClients.ConnectAsync(host.EndPoint("slow")))
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            await SendAsync(client, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
            var response = await ReadResponseAsync(client);
            Assert.Equal(504, response.Status);
            Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(3));
            Assert.Equal("504 no backend of pool 'silent' answered\n", response.Body);
        }

        // A body larger than any buffer, sent in pieces: streamed to the backend whole.
        var body = new string('x', 3 * 1024 * 1024);
        using (var client = await TcpClients.ConnectAsync(host.EndPoint("web")))
        {
            await SendAsync(client, $"PUT /big HTTP/1.1\r\nHost: lb.test\r\nContent-Length: {body.Length}\r\n\r\n");
            for (var offset = 0; offset < body.Length; offset += 256 * 1024)
            {
                await SendAsync(client, body.Substring(offset, 256 * 1024));
            }
            Assert.Equal("ok", (await ReadResponseAsync(client)).Body);
        }
        var received = Assert.Single(backend.Requests);
        Assert.EndsWith("\r\n\r\n" + body, received, StringComparison.Ordinal);
        Assert.Equal(2, host.Extension.FrontendCounters("web").FastPath + host.Extension.FrontendCounters("slow").FastPath);
    }

    private static Task SendAsync(Socket socket, string text) => socket.SendAsync(Encoding.Latin1.GetBytes(text), SocketFlags.None);

    /// <summary>One response as the client got it: its status, head and body (chunks joined).</summary>
    private sealed record RawResponse(int Status, string Head, string Body);

    private static async Task<string> ReadUntilClosedAsync(Socket socket)
    {
        var text = new StringBuilder();
        var buffer = new byte[64 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
            {
                text.Append(Encoding.Latin1.GetString(buffer, 0, read));
            }
        }
        catch (SocketException)
        {
        }
        return text.ToString();
    }

    private static async Task<RawResponse> ReadResponseAsync(Socket socket)
    {
        var pending = new StringBuilder();
        var buffer = new byte[64 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = pending.ToString();
            if (TryTake(text, out var response, out var length))
            {
                Assert.Equal(text.Length, length);
                return response!;
            }
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.True(read > 0, "the connection closed before a whole response: " + text);
            pending.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }
    }

    private static bool TryTake(string text, out RawResponse? response, out int length)
    {
        response = null;
        length = 0;
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0)
        {
            return false;
        }
        var head = text[..(end + 4)];
        var status = int.Parse(head.Split(' ')[1]);
        var lengthLine = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        if (head.Contains("\r\nTransfer-Encoding: chunked\r\n", StringComparison.OrdinalIgnoreCase))
        {
            var body = new StringBuilder();
            var position = end + 4;
            while (true)
            {
                var lineEnd = text.IndexOf("\r\n", position, StringComparison.Ordinal);
                if (lineEnd < 0)
                {
                    return false;
                }
                var size = Convert.ToInt32(text[position..lineEnd], 16);
                if (size == 0)
                {
                    if (text.Length < lineEnd + 4)
                    {
                        return false;
                    }
                    Assert.Equal("\r\n\r\n", text.Substring(lineEnd, 4));
                    response = new RawResponse(status, head, body.ToString());
                    length = lineEnd + 4;
                    return true;
                }
                if (text.Length < lineEnd + 2 + size + 2)
                {
                    return false;
                }
                body.Append(text, lineEnd + 2, size);
                position = lineEnd + 2 + size + 2;
            }
        }
        var contentLength = lengthLine is null || status is 204 or 304 ? 0 : int.Parse(lengthLine.Split(':')[1].Trim());
        if (text.Length < end + 4 + contentLength)
        {
            return false;
        }
        response = new RawResponse(status, head, text.Substring(end + 4, contentLength));
        length = end + 4 + contentLength;
        return true;
    }
}

/// <summary>The same tests with the fast path's backend connections on .NET's sockets (<c>event-loop = off</c>, and where there is no event loop).</summary>
public sealed class Http1FastPathTestsOnAsyncSockets : Http1FastPathTests
{
    protected override string BackendSockets => "balancer.frontend-defaults.event-loop = off";

    protected override bool ClientsOnTheEventLoop => false;
}
