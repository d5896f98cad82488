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

    internal static EtcdSettings? ReadEtcd(SettingsReader etcd)
    {
        var endpoints = new List<Uri>();
        foreach (var text in etcd.StringList("endpoints"))
        {
            if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            {
                endpoints.Add(uri);
            }
            else
            {
                etcd.Problem("endpoints", $"expected http://HOST:PORT or https://HOST:PORT, got \"{text}\"");
            }
        }
        var prefix = etcd.String("prefix");
        if (!prefix.StartsWith('/') || prefix.Length < 2 || prefix.EndsWith('/'))
        {
            etcd.Problem("prefix", $"expected a key prefix like \"/balancer\" (a leading slash, no trailing one), got \"{prefix}\"");
        }
        var username = etcd.String("username");
        var passwordEnv = etcd.String("password-env");
        if (username.Length > 0 && passwordEnv.Length == 0)
        {
            etcd.Problem("password-env", "username is set: name the environment variable that holds the password");
        }
        return endpoints.Count == 0 ? null : new EtcdSettings([.. endpoints], prefix, username, passwordEnv);
    }
}
