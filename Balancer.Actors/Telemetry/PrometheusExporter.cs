using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Balancer.Model;

namespace Balancer.Telemetry;

/// <summary>
/// Writes the node's <see cref="BalancerMetrics"/> in the Prometheus text exposition format (0.0.4)
/// for <c>GET /metrics</c>. Observable instruments are read at scrape time; the upstream latency
/// histogram comes straight from the backends' bucket counters, because System.Diagnostics.Metrics
/// has no observable histogram and a recorded one would cost a listener callback per request.
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    private readonly BalancerMetrics _metrics;
    private readonly MeterListener _listener = new();
    private readonly Lock _scrape = new();
    private readonly Dictionary<Instrument, List<(string Labels, double Value)>> _collected = new();

    internal PrometheusExporter(BalancerMetrics metrics)
    {
        _metrics = metrics;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Collect(instrument, value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Collect(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Collect(instrument, value, tags));
        _listener.Start();
    }

    /// <summary>The content type of <see cref="Scrape"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Every metric now, as Prometheus text.</summary>
    public string Scrape()
    {
        lock (_scrape)
        {
            _collected.Clear();
            _listener.RecordObservableInstruments();
            var text = new StringBuilder(8192);
            foreach (var (instrument, samples) in _collected.OrderBy(c => c.Key.Name, StringComparer.Ordinal))
            {
                var (name, type) = NameOf(instrument);
                text.Append("# HELP ").Append(name).Append(' ').Append(instrument.Description).Append('\n');
                text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
                foreach (var (labels, value) in samples)
                {
                    text.Append(name).Append(labels).Append(' ').Append(Format(value)).Append('\n');
                }
            }
            WriteLatencyHistogram(text);
            return text.ToString();
        }
    }

    private void WriteLatencyHistogram(StringBuilder text)
    {
        const string name = "balancer_backend_upstream_duration_seconds";
        text.Append("# HELP ").Append(name).Append(" Time from sending a request to the backend until its response headers arrived\n");
        text.Append("# TYPE ").Append(name).Append(" histogram\n");
        var bounds = BackendCounters.LatencyBoundsSeconds;
        foreach (var backend in _metrics.Pools.Pools.Values.SelectMany(p => p.Snapshot.Backends))
        {
            var labels = Labels(BalancerMetrics.BackendTags(backend));
            var cumulative = backend.Counters.LatencyHistogram();
            for (var i = 0; i < bounds.Length; i++)
            {
                text.Append(name).Append("_bucket").Append(labels[..^1]).Append(",le=\"").Append(Format(bounds[i])).Append("\"} ").Append(cumulative[i]).Append('\n');
            }
            text.Append(name).Append("_bucket").Append(labels[..^1]).Append(",le=\"+Inf\"} ").Append(cumulative[^1]).Append('\n');
            text.Append(name).Append("_sum").Append(labels).Append(' ').Append(Format(backend.Counters.LatencySumSeconds)).Append('\n');
            text.Append(name).Append("_count").Append(labels).Append(' ').Append(cumulative[^1]).Append('\n');
        }
    }

    private void Collect(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (!_collected.TryGetValue(instrument, out var samples))
        {
            _collected[instrument] = samples = new List<(string, double)>();
        }
        samples.Add((Labels(tags), value));
    }

    /// <summary>"balancer.backend.requests" (counter) becomes "balancer_backend_requests_total".</summary>
    private static (string Name, string Type) NameOf(Instrument instrument)
    {
        var name = instrument.Name.Replace('.', '_');
        return instrument switch
        {
            ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double> => (name + "_total", "counter"),
            _ => (name, "gauge"),
        };
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0)
        {
            return string.Empty;
        }
        var text = new StringBuilder("{");
        for (var i = 0; i < tags.Length; i++)
        {
            if (i > 0)
            {
                text.Append(',');
            }
            text.Append(tags[i].Key).Append("=\"");
            foreach (var c in tags[i].Value?.ToString() ?? string.Empty)
            {
                _ = c switch
                {
                    '\\' => text.Append("\\\\"),
                    '"' => text.Append("\\\""),
                    '\n' => text.Append("\\n"),
                    _ => text.Append(c),
                };
            }
            text.Append('"');
        }
        return text.Append('}').ToString();
    }

    private static string Format(double value) => double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("R", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();
}
