using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Alerts;

/// <summary>Per-backend threshold alerts: a backend that fails or slows down under real traffic is reported once, and once again when it recovers.</summary>
[Collection(SerialCollection.Name)]
public class ThresholdAlertTests
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task ErrorsAndSlowAnswers_OverTheirThresholds_AlertOnce_AndOnceMoreWhenBackUnder()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              alerts {
                webhooks = ["{{receiver.Url}}"]
                thresholds { error-rate = 50%, p99-latency = 1s, window = 3s, min-requests = 5 }
              }
              frontends.web { bind = "127.0.0.1:0", pool = app }
              pools.app {
                health-check.kind = none
                passive.consecutive-failures = 0
                {{backends.Hocon()}}
              }
            }
            """);
        int Posts(string kind) => receiver.Received.Count(e => e.GetProperty("kind").GetString() == kind);

        // Every answer a 500: one alert, however long it goes on.
        for (var i = 0; i < 40; i++)
        {
            using var failing = await Client.GetAsync(host.Uri("web", "/status/500"));
            await Task.Delay(50);
        }
        var errors = await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-errors", TimeSpan.FromSeconds(5));
        Assert.Equal("a", errors.GetProperty("backend").GetString());
        Assert.Contains("over 50%", errors.GetProperty("text").GetString());
        // Good answers again: once the failures left the window, one "-over".
        for (var i = 0; i < 80; i++)
        {
            using var ok = await Client.GetAsync(host.Uri("web", "/"));
            await Task.Delay(50);
        }
        await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-errors-over", TimeSpan.FromSeconds(5));
        Assert.Equal(1, Posts("backend-errors"));

        // Slow answers: p99 over 1 s.
        await Client.PostAsync($"http://127.0.0.1:{backends["a"].Port}/control/slow?ms=1500", null);
        await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            using var slow = await Client.GetAsync(host.Uri("web", "/"));
        }));
        var slowAlert = await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-slow", TimeSpan.FromSeconds(5));
        Assert.Contains("latency over 1000 ms: p99 between 1000 and 2500 ms", slowAlert.GetProperty("text").GetString());
        Assert.Equal(1, Posts("backend-slow"));
        Assert.Equal(1, Posts("backend-errors"));
    }
}
