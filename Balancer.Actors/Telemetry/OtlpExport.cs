using Balancer.Configuration;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Balancer.Telemetry;

/// <summary>
/// The OpenTelemetry SDK's pipelines for <c>balancer.telemetry.otlp</c>: Balancer's spans
/// (<see cref="BalancerTracing"/>) and its meter (<see cref="BalancerMetrics"/>), exported over OTLP
/// as the service <c>balancer</c>, this node's address its instance id. Disposing flushes what is
/// still buffered.
/// </summary>
internal sealed class OtlpExport : IDisposable
{
    private readonly TracerProvider _tracing;
    private readonly MeterProvider _metrics;

    private OtlpExport(TracerProvider tracing, MeterProvider metrics)
    {
        _tracing = tracing;
        _metrics = metrics;
    }

    /// <summary>Starts exporting to <see cref="TelemetrySettings.Endpoint"/>, or returns null when it is not set.</summary>
    public static OtlpExport? Start(TelemetrySettings settings, string nodeAddress)
    {
        if (settings.Endpoint is not { } endpoint)
        {
            return null;
        }
        var resource = ResourceBuilder.CreateDefault().AddService("balancer", serviceVersion: BalancerSettings.Version, serviceInstanceId: nodeAddress);
        var interval = (int)settings.ExportInterval.TotalMilliseconds;
        var tracing = Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(resource)
            .AddSource(BalancerTracing.SourceName)
            // A client that decided whether its trace is sampled is followed; otherwise the share.
            .SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(settings.Sampling)))
            .AddOtlpExporter(options =>
            {
                Configure(options, settings, endpoint, "v1/traces");
                options.BatchExportProcessorOptions.ScheduledDelayMilliseconds = interval;
            })
            .Build();
        var metrics = Sdk.CreateMeterProviderBuilder()
            .SetResourceBuilder(resource)
            .AddMeter(BalancerMetrics.MeterName)
            .AddOtlpExporter((options, reader) =>
            {
                Configure(options, settings, endpoint, "v1/metrics");
                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval;
            })
            .Build();
        return new OtlpExport(tracing, metrics);
    }

    private static void Configure(OtlpExporterOptions options, TelemetrySettings settings, Uri endpoint, string signalPath)
    {
        options.Protocol = settings.Protocol == OtlpProtocol.Grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        // Over HTTP each signal has its own path under the collector's base address.
        options.Endpoint = settings.Protocol == OtlpProtocol.Grpc ? endpoint : new Uri(endpoint.ToString().TrimEnd('/') + "/" + signalPath);
        if (settings.Headers.Length > 0)
        {
            options.Headers = settings.Headers;
        }
    }

    public void Dispose()
    {
        _tracing.Dispose();
        _metrics.Dispose();
    }
}
