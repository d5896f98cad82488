using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Telemetry;

/// <summary>Traces and metrics reach a real OTLP/HTTP collector, and a request's trace runs from the client through the balancer to the backend.</summary>
[Collection(SerialCollection.Name)]
public class OtlpExportTests
{
    private const string ClientTraceId = "0af7651916cd43dd8448eb211c80319c";
    private const string ClientSpanId = "b7ad6b7169203331";

    [Fact]
    public async Task ARequestsSpan_ContinuesTheClientsTrace_NamesItsBackend_AndIsWhatTheBackendContinues()
    {
        await using var collector = await OtlpReceiver.StartAsync();
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await StartAsync(backends, $"telemetry.otlp {{ endpoint = \"{collector.Endpoint}\", export-interval = 500ms }}");
        using var response = await SendTracedAsync(host);
        response.EnsureSuccessStatusCode();
        var backend = response.Headers.GetValues("X-Backend").Single();
        var seenByBackend = (await response.Content.ReadAsStringAsync()).Split('\n').Single(l => l.StartsWith("traceparent: ", StringComparison.OrdinalIgnoreCase))["traceparent: ".Length..];

        OtlpReceiver.Span? exported = null;
        await Eventually.Holds(() => Assert.NotNull(exported = collector.Spans.FirstOrDefault(s => s.TraceId == ClientTraceId)), TimeSpan.FromSeconds(15));
        var span = exported!;
        Assert.Equal("proxy app", span.Name);
        Assert.Equal(ClientSpanId, span.ParentSpanId);
        Assert.Equal(backend, span.Attributes["balancer.backend"]);
        Assert.Equal("app", span.Attributes["balancer.pool"]);
        Assert.Equal("web", span.Attributes["balancer.frontend"]);
        Assert.Equal("200", span.Attributes["http.response.status_code"]);
        Assert.Equal("1", span.Attributes["balancer.attempts"]);
        // The backend continues the same trace, as a child of the balancer's span.
        Assert.Equal($"00-{ClientTraceId}-{span.SpanId}-01", seenByBackend);

        // The existing meters are exported too.
        await Eventually.Holds(() => Assert.Contains(collector.MetricNames.Keys, n => n.StartsWith("balancer.", StringComparison.Ordinal)), TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task WithoutAnEndpoint_NothingIsRecorded_AndTheClientsTraceContextPassesThroughUnchanged()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await StartAsync(backends);
        using var response = await SendTracedAsync(host);
        Assert.Contains($"traceparent: 00-{ClientTraceId}-{ClientSpanId}-01", await response.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
    }

    private static Task<BalancerHost> StartAsync(BackendSet backends, string telemetry = "") => BalancerHost.StartAsync($$"""
        balancer {
          {{telemetry}}
          frontends.web { mode = http, bind = "127.0.0.1:0", pool = app }
          pools.app { health-check.kind = none, {{backends.Hocon()}} }
        }
        """);

    /// <summary>GET /headers (the backend echoes the request's headers) as part of the client's trace.</summary>
    private static async Task<HttpResponseMessage> SendTracedAsync(BalancerHost host)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", "/headers"));
        request.Headers.TryAddWithoutValidation("traceparent", $"00-{ClientTraceId}-{ClientSpanId}-01");
        return await http.SendAsync(request);
    }
}
