using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// An OTLP/HTTP collector on loopback (Kestrel): decodes the spans posted to /v1/traces from their
/// protobuf wire form and keeps the metric names posted to /v1/metrics.
/// </summary>
internal sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpReceiver(WebApplication app) => _app = app;

    public ConcurrentQueue<Span> Spans { get; } = new();

    public ConcurrentDictionary<string, bool> MetricNames { get; } = new();

    public string Endpoint => _app.Urls.First();

    public sealed record Span(string TraceId, string SpanId, string ParentSpanId, string Name, IReadOnlyDictionary<string, string> Attributes);

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var receiver = new OtlpReceiver(app);
        app.MapPost("/v1/traces", async (HttpContext context) =>
        {
            foreach (var span in DecodeSpans(await ReadAsync(context)))
            {
                receiver.Spans.Enqueue(span);
            }
            return Results.Ok();
        });
        app.MapPost("/v1/metrics", async (HttpContext context) =>
        {
            foreach (var name in DecodeMetricNames(await ReadAsync(context)))
            {
                receiver.MetricNames[name] = true;
            }
            return Results.Ok();
        });
        await app.StartAsync();
        return receiver;
    }

    private static async Task<byte[]> ReadAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        return body.ToArray();
    }

    // ExportTraceServiceRequest{1: ResourceSpans{2: ScopeSpans{2: Span}}}
    private static IEnumerable<Span> DecodeSpans(byte[] request) =>
        from resourceSpans in Fields(request, 1)
        from scopeSpans in Fields(resourceSpans, 2)
        from span in Fields(scopeSpans, 2)
        select ToSpan(span);

    // ExportMetricsServiceRequest{1: ResourceMetrics{2: ScopeMetrics{2: Metric{1: name}}}}
    private static IEnumerable<string> DecodeMetricNames(byte[] request) =>
        from resourceMetrics in Fields(request, 1)
        from scopeMetrics in Fields(resourceMetrics, 2)
        from metric in Fields(scopeMetrics, 2)
        from name in Fields(metric, 1)
        select Encoding.UTF8.GetString(name);

    // Span{1: trace_id, 2: span_id, 4: parent_span_id, 5: name, 9: KeyValue{1: key, 2: AnyValue{1: string, 3: int}}}
    private static Span ToSpan(byte[] span)
    {
        var attributes = new Dictionary<string, string>();
        foreach (var keyValue in Fields(span, 9))
        {
            var key = Encoding.UTF8.GetString(Fields(keyValue, 2).Any() ? Fields(keyValue, 1).First() : []);
            var value = Fields(keyValue, 2).FirstOrDefault() ?? [];
            attributes[key] = Fields(value, 1).FirstOrDefault() is { } text
                ? Encoding.UTF8.GetString(text)
                : Varints(value, 3).FirstOrDefault().ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return new Span(
            Convert.ToHexStringLower(Fields(span, 1).FirstOrDefault() ?? []),
            Convert.ToHexStringLower(Fields(span, 2).FirstOrDefault() ?? []),
            Convert.ToHexStringLower(Fields(span, 4).FirstOrDefault() ?? []),
            Encoding.UTF8.GetString(Fields(span, 5).FirstOrDefault() ?? []),
            attributes);
    }

    /// <summary>The length-delimited fields numbered <paramref name="number"/> of a protobuf message.</summary>
    private static IEnumerable<byte[]> Fields(byte[] message, int number) =>
        Walk(message).Where(f => f.Number == number && f.Bytes is not null).Select(f => f.Bytes!);

    private static IEnumerable<long> Varints(byte[] message, int number) =>
        Walk(message).Where(f => f.Number == number && f.Bytes is null).Select(f => f.Value);

    private static List<(int Number, byte[]? Bytes, long Value)> Walk(byte[] message)
    {
        var fields = new List<(int, byte[]?, long)>();
        var position = 0;
        while (position < message.Length)
        {
            var key = ReadVarint(message, ref position);
            var number = (int)(key >> 3);
            switch (key & 7)
            {
                case 0:
                    fields.Add((number, null, (long)ReadVarint(message, ref position)));
                    break;
                case 1:
                    fields.Add((number, null, BitConverter.ToInt64(message, position)));
                    position += 8;
                    break;
                case 2:
                    var length = (int)ReadVarint(message, ref position);
                    fields.Add((number, message[position..(position + length)], 0));
                    position += length;
                    break;
                case 5:
                    fields.Add((number, null, BitConverter.ToInt32(message, position)));
                    position += 4;
                    break;
                default:
                    throw new InvalidDataException($"wire type {key & 7} at byte {position}");
            }
        }
        return fields;
    }

    private static ulong ReadVarint(byte[] bytes, ref int position)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = bytes[position++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
