using System.Net.Sockets;
using System.Text;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Frontends;

/// <summary>An HTTP frontend in front of one <see cref="RecordingBackend"/>, forwarding nothing of its own (no forwarding headers).</summary>
public class SmugglingBench : IAsyncLifetime
{
    /// <summary>How plain HTTP/1.1 requests cross the frontend.</summary>
    protected virtual HttpEngine Engine => HttpEngine.FastPath;

    internal RecordingBackend Backend { get; } = new();

    internal BalancerHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await BalancerHost.StartAsync($$"""
        balancer.frontends.web { bind = "127.0.0.1:0", pool = app, forwarded-headers = off }
        balancer.pools.app { health-check.kind = none, retries = 0, backends.rec = "127.0.0.1:{{Backend.Port}}" }
        """, Engine);

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        Backend.Dispose();
    }
}

/// <summary>
/// Request smuggling: requests a front and a back end could frame differently. Each is sent raw on
/// a connection of its own; it must be refused (4xx/5xx, the connection closed, nothing reaching
/// the backend) or forwarded in one unambiguous form, which is asserted byte for byte as the
/// backend received it.
/// </summary>
[Collection(SerialCollection.Name)]
public class SmugglingTests : IClassFixture<SmugglingBench>
{
    private const string Host = "Host: lb.test\r\n";

    /// <summary>What the backend receives of a GET / (YARP writes the Host first, then the headers in order).</summary>
    private const string ForwardedGet = "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n";

    private readonly SmugglingBench _bench;

    public SmugglingTests(SmugglingBench bench) => _bench = bench;

    /// <summary>A case: the raw request, then the statuses the client gets and what the backend gets (nothing when refused).</summary>
    public sealed record Case(string Request, int[] Statuses, string[] Forwarded, bool Closes);

    private static Case Refused(string request, int status = 400) => new(request, [status], [], true);

    private static Case Forwarded(string request, params string[] forwarded) => new(request, forwarded.Select(_ => 200).ToArray(), forwarded, false);

    public static readonly Dictionary<string, Case> Cases = new()
    {
        // Content-Length and Transfer-Encoding
        ["content-length and chunked"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["chunked and content-length"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["two equal content-lengths"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ["two different content-lengths"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ["content-length list"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 5, 5\r\n\r\nhello"),
        ["negative content-length"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: -1\r\n\r\nhello"),
        ["content-length with a sign, normalized"] = Forwarded($"POST / HTTP/1.1\r\n{Host}Content-Length: +5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello"),
        ["content-length not a number"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 5a\r\n\r\nhello"),
        ["content-length overflowing 64 bits"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 99999999999999999999\r\n\r\nhello"),
        ["content-length in hex"] = Refused($"POST / HTTP/1.1\r\n{Host}Content-Length: 0x5\r\n\r\nhello"),
        // Obfuscated Transfer-Encoding
        ["transfer-encoding xchunked"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["transfer-encoding identity"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: identity\r\n\r\nhello"),
        ["chunked not last"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["space before the colon"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["transfer-encoding in a folded line"] = Refused($"POST / HTTP/1.1\r\n{Host}X-Pad: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"),
        ["transfer-encoding on HTTP/1.0, normalized, then closed"] = Forwarded($"POST / HTTP/1.0\r\n{Host}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n") with { Closes = true },
        // Chunks
        ["chunk size overflowing 64 bits"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
        ["chunk size not hex"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n"),
        ["negative chunk size"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
        ["chunk data longer than its size"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
        ["chunk size ended by a bare LF"] = Refused($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        ["chunk extension, normalized"] = Forwarded($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ["chunked body, forwarded chunked"] = Forwarded($"POST / HTTP/1.1\r\n{Host}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        // Header syntax
        ["bare LF line ends, normalized"] = Forwarded("GET / HTTP/1.1\nHost: lb.test\n\n", ForwardedGet),
        ["bare CR in a value"] = Refused($"GET / HTTP/1.1\r\n{Host}X-A: 1\r2\r\n\r\n"),
        ["obs-fold"] = Refused($"GET / HTTP/1.1\r\n{Host}X-A: 1\r\n 2\r\n\r\n"),
        ["space in a header name"] = Refused($"GET / HTTP/1.1\r\n{Host}X A: 1\r\n\r\n"),
        ["header line without a colon"] = Refused($"GET / HTTP/1.1\r\n{Host}NoColon\r\n\r\n"),
        ["delimiter in a header name, dropped"] = Forwarded($"GET / HTTP/1.1\r\n{Host}X(A): 1\r\n\r\n", ForwardedGet),
        ["NUL in a value"] = Refused($"GET / HTTP/1.1\r\n{Host}X-A: 1\0 2\r\n\r\n"),
        ["no Host"] = Refused("GET / HTTP/1.1\r\n\r\n"),
        ["two Hosts"] = Refused($"GET / HTTP/1.1\r\n{Host}Host: other.test\r\n\r\n"),
        // Request line and targets
        ["absolute-form with its Host, normalized"] = Forwarded($"GET http://lb.test/ HTTP/1.1\r\n{Host}\r\n", ForwardedGet),
        ["absolute-form naming another host"] = Refused($"GET http://other.test/ HTTP/1.1\r\n{Host}\r\n"),
        ["authority-form on GET"] = Refused($"GET lb.test:80 HTTP/1.1\r\n{Host}\r\n", 405),
        ["space in the target"] = Refused($"GET /a b HTTP/1.1\r\n{Host}\r\n"),
        ["unknown version"] = Refused($"GET / HTTP/1.2\r\n{Host}\r\n", 505),
        ["invalid method"] = Refused($"G(T / HTTP/1.1\r\n{Host}\r\n"),
        // Pipelining: each request framed once, forwarded as it is, answered in order.
        ["two pipelined GETs"] = Forwarded($"GET /one HTTP/1.1\r\n{Host}\r\nGET /two HTTP/1.1\r\n{Host}\r\n",
            "GET /one HTTP/1.1\r\nHost: lb.test\r\n\r\n", "GET /two HTTP/1.1\r\nHost: lb.test\r\n\r\n"),
        ["a GET hidden in a body stays body"] = Forwarded($"POST /a HTTP/1.1\r\n{Host}Content-Length: 38\r\n\r\nGET /admin HTTP/1.1\r\nHost: lb.test\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 38\r\n\r\nGET /admin HTTP/1.1\r\nHost: lb.test\r\n\r\n"),
    };

    public static IEnumerable<object[]> CaseNames => Cases.Keys.Select(name => new object[] { name });

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Request_IsRefusedOrForwardedInOneForm(string name)
    {
        var expected = Cases[name];
        while (_bench.Backend.Requests.TryDequeue(out _))
        {
        }
        using var client = await TcpClients.ConnectAsync(_bench.Host.EndPoint("web"));
        await client.SendAsync(Encoding.Latin1.GetBytes(expected.Request));
        var (statuses, closed) = await ReadResponsesAsync(client, expected.Statuses.Length);
        Assert.Equal(expected.Statuses, statuses.ToArray());
        if (expected.Closes)
        {
            Assert.True(closed, "the connection stayed open after the refusal");
        }
        // Give a forwarded request time to arrive, and a refused one time to (wrongly) arrive.
        await Task.Delay(expected.Forwarded.Length == 0 ? 200 : 0);
        Assert.Equal(expected.Forwarded, _bench.Backend.Requests.ToArray());
    }

    [Fact]
    public async Task BackendResponses_WithoutALengthOrWithTwo_NeverLeaveTheirConnectionForReuse()
    {
        var backend = _bench.Backend;
        try
        {
            // A response whose body runs until the backend closes: passed on whole, and the
            // connection that carried it is not used again.
            backend.Answer = request => request.StartsWith("GET /unframed", StringComparison.Ordinal)
                ? "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the close"
                : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            backend.CloseAfter = request => request.StartsWith("GET /unframed", StringComparison.Ordinal);
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
            Assert.Equal("ok", await http.GetStringAsync(_bench.Host.Uri("web", "/warm")));
            var before = backend.Connections;
            Assert.Equal("body until the close", await http.GetStringAsync(_bench.Host.Uri("web", "/unframed")));
            Assert.Equal("ok", await http.GetStringAsync(_bench.Host.Uri("web", "/after")));
            Assert.True(backend.Connections > before, "the request after an unframed response went over the connection it ended");

            // A response with two different lengths: 502, and that connection is dropped too.
            backend.Answer = request => request.StartsWith("GET /twolengths", StringComparison.Ordinal)
                ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello"
                : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            backend.CloseAfter = _ => false;
            Assert.Equal("ok", await http.GetStringAsync(_bench.Host.Uri("web", "/warm-again")));
            before = backend.Connections;
            using (var response = await http.GetAsync(_bench.Host.Uri("web", "/twolengths")))
            {
                Assert.Equal(System.Net.HttpStatusCode.BadGateway, response.StatusCode);
            }
            Assert.Equal("ok", await http.GetStringAsync(_bench.Host.Uri("web", "/after-error")));
            Assert.True(backend.Connections > before, "the request after a broken response went over the connection it broke");
        }
        finally
        {
            backend.Answer = null;
            backend.CloseAfter = _ => false;
        }
    }

    /// <summary>Reads up to <paramref name="count"/> responses; then whether the connection closed (within a short wait).</summary>
    private static async Task<(List<int> Statuses, bool Closed)> ReadResponsesAsync(Socket socket, int count)
    {
        var statuses = new List<int>();
        var pending = new StringBuilder();
        var buffer = new byte[16 * 1024];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (true)
        {
            // Take every whole response in what has arrived.
            while (TryTakeResponse(pending, out var status))
            {
                statuses.Add(status);
            }
            var wait = statuses.Count >= count ? TimeSpan.FromMilliseconds(300) : deadline - DateTime.UtcNow;
            if (wait <= TimeSpan.Zero)
            {
                return (statuses, false);
            }
            using var timeout = new CancellationTokenSource(wait);
            int read;
            try
            {
                read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return (statuses, false);
            }
            catch (SocketException)
            {
                return (statuses, true);
            }
            if (read == 0)
            {
                while (TryTakeResponse(pending, out var status))
                {
                    statuses.Add(status);
                }
                return (statuses, true);
            }
            pending.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }
    }

    private static bool TryTakeResponse(StringBuilder pending, out int status)
    {
        status = 0;
        var text = pending.ToString();
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0)
        {
            return false;
        }
        var head = text[..end];
        var lengthLine = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        var length = lengthLine is null ? 0 : int.Parse(lengthLine.Split(':')[1].Trim());
        if (head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            var last = text.IndexOf("\r\n0\r\n\r\n", end, StringComparison.Ordinal);
            if (last < 0)
            {
                return false;
            }
            length = last + 7 - (end + 4);
        }
        if (text.Length < end + 4 + length)
        {
            return false;
        }
        status = int.Parse(head.Split(' ')[1]);
        pending.Remove(0, end + 4 + length);
        return true;
    }
}

/// <summary>The smuggling bench with plain HTTP/1.1 through Kestrel and YARP.</summary>
public sealed class SmugglingBenchOnYarp : SmugglingBench
{
    protected override HttpEngine Engine => HttpEngine.Yarp;
}

/// <summary>The smuggling corpus against Kestrel and YARP, the way requests the fast path does not take go.</summary>
[Collection(SerialCollection.Name)]
public sealed class SmugglingTestsOnYarp : SmugglingTests, IClassFixture<SmugglingBenchOnYarp>
{
    public SmugglingTestsOnYarp(SmugglingBenchOnYarp bench)
        : base(bench)
    {
    }
}
