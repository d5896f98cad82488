using System.Collections.Immutable;
using Akka.Configuration;

namespace Balancer.Configuration;

/// <summary>Reads and checks <c>balancer.alerts</c>.</summary>
internal static class AlertSettingsReader
{
    internal static AlertSettings ReadAlerts(SettingsReader alerts, Config userBalancer, Config reference)
    {
        alerts.RejectUnknownKeys(SettingsReader.KeysOf(reference.GetConfig("alerts")), userBalancer.HasPath("alerts") ? userBalancer.GetConfig("alerts") : Config.Empty);
        var webhooks = alerts.HttpUrls("webhooks");
        var thresholds = alerts.Section("thresholds");
        return new AlertSettings(
            webhooks,
            alerts.Duration("timeout"),
            alerts.Int("max-attempts", 1, 100),
            alerts.Int("queue-limit", 1, 1_000_000),
            new ThresholdSettings(
                thresholds.Percent("error-rate"),
                thresholds.Duration("p99-latency", allowZero: true),
                thresholds.Duration("window"),
                thresholds.Int("min-requests", 1, 1_000_000)));
    }
}
