using Akka.Configuration;

namespace Balancer.Configuration;

/// <summary>Reads and checks <c>balancer.telemetry</c>.</summary>
internal static class TelemetrySettingsReader
{
    internal static TelemetrySettings ReadTelemetry(SettingsReader telemetry, Config userBalancer, Config reference)
    {
        telemetry.RejectUnknownKeys(SettingsReader.KeysOf(reference.GetConfig("telemetry")), userBalancer.HasPath("telemetry") ? userBalancer.GetConfig("telemetry") : Config.Empty);
        var otlp = telemetry.Section("otlp");
        var endpointText = otlp.String("endpoint");
        Uri? endpoint = null;
        if (endpointText.Length > 0)
        {
            if (Uri.TryCreate(endpointText, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            {
                endpoint = uri;
            }
            else
            {
                otlp.Problem("endpoint", $"expected an absolute http:// or https:// URL, got \"{endpointText}\"");
            }
        }
        var protocol = otlp.Choice("protocol", "http/protobuf", "grpc") == "grpc" ? OtlpProtocol.Grpc : OtlpProtocol.HttpProtobuf;
        var headers = otlp.String("headers");
        foreach (var pair in headers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (pair.IndexOf('=') <= 0)
            {
                // The value may be a secret: the problem names the key only.
                otlp.Problem("headers", $"expected NAME=VALUE pairs separated by commas, got an entry without '=' (\"{pair.Split('=')[0]}\")");
            }
        }
        return new TelemetrySettings(endpoint, protocol, headers, otlp.Percent("sampling"), otlp.Duration("export-interval"));
    }
}
