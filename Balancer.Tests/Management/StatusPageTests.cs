using System.Net.Http.Json;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Management;

/// <summary>The status page at <c>GET /</c> of a running node, in headless Chromium.</summary>
[Collection(SerialCollection.Name)]
public class StatusPageTests
{
    /// <summary>A node with its admin API, one frontend, and quick health checks of <paramref name="backends"/>.</summary>
    private static Task<BalancerHost> StartNodeAsync(BackendSet backends) => BalancerHost.StartAsync($$"""
        balancer {
          node.admin { enabled = on, bind = "127.0.0.1:0" }
          frontends.web { bind = "127.0.0.1:0", pool = app }
          pools.app {
            health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
            {{backends.Hocon()}}
          }
        }
        """);

    [Fact]
    public async Task StatusPage_FirstPaint_ComesFromTheServer_MembersFrontendsBackendsAndWhyABackendIsDown()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await StartNodeAsync(backends);
        using var http = new HttpClient();
        await http.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
        var page = await host.AdminUriAsync("/");
        await Eventually.Holds(async () => Assert.Contains("data-health=\"down\"", await http.GetStringAsync(page)), TimeSpan.FromSeconds(10));

        // What a browser paints first is the page as served, before any script fetched anything:
        // the screenshot a person would take, and the markup it is painted from.
        var screenshot = Path.Combine(Path.GetTempPath(), $"balancer-status-{Guid.NewGuid():N}.png");
        try
        {
            await HeadlessChromium.RunOnceAsync(page, $"--screenshot={screenshot}", "--window-size=1280,900");
            Assert.True(new FileInfo(screenshot).Length > 10_000, "the screenshot has content");
        }
        finally
        {
            File.Delete(screenshot);
        }
        var dom = await http.GetStringAsync(page);
        Assert.Matches(@"<tr data-member=""akka\.tcp://[^""]+""><td>akka\.tcp://", dom);
        Assert.Contains("(1 of 1 up)", dom);
        Assert.Contains("<tr data-frontend=\"web\">", dom);
        Assert.Contains("<tr data-backend=\"app/a\" data-health=\"up\" data-state=\"ready\">", dom);
        Assert.Matches(@"<tr data-backend=""app/b"" data-health=""down"" data-state=""ready"">.*<span class=""reason"">[^<]*HTTP 503", dom);
        Assert.Contains("this node", dom);
        Assert.DoesNotContain("loading", dom);
    }

    [Fact]
    public async Task StatusPage_ShowsEveryBackend_AndAStateChangeWithoutReloading()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await StartNodeAsync(backends);
        await using var browser = await HeadlessChromium.OpenAsync(await host.AdminUriAsync("/"));

        const string rows = "JSON.stringify([...document.querySelectorAll('tr[data-backend]')].map(r => [r.dataset.backend, r.dataset.health, r.dataset.state]))";
        await Eventually.Holds(async () =>
            Assert.Equal("""[["app/a","up","ready"],["app/b","up","ready"],["app/c","up","ready"]]""", (await browser.EvaluateAsync(rows)).GetString()),
            TimeSpan.FromSeconds(15));
        await Eventually.Holds(async () =>
            Assert.Contains("1 of 1 up", (await browser.EvaluateAsync("document.getElementById('member-count').textContent")).GetString()));
        // Marks the document: a reload would lose the mark.
        await browser.EvaluateAsync("window.__notReloaded = true");

        using var http = new HttpClient();
        using (var drain = await http.PostAsJsonAsync(await host.AdminUriAsync("/api/pools/app/backends/b/state"), new { state = "maint" }))
        {
            drain.EnsureSuccessStatusCode();
        }
        await http.PostAsync($"http://127.0.0.1:{backends["c"].Port}/control/health?ok=false", null);

        await Eventually.Holds(async () =>
            Assert.Equal("""[["app/a","up","ready"],["app/b","up","maint"],["app/c","down","ready"]]""", (await browser.EvaluateAsync(rows)).GetString()),
            TimeSpan.FromSeconds(10));
        Assert.True((await browser.EvaluateAsync("window.__notReloaded === true")).GetBoolean(), "the page was reloaded");
        // The change also shows up in the live event list.
        await Eventually.Holds(async () =>
            Assert.True((await browser.EvaluateAsync("document.querySelectorAll('#events [data-kind=\"backend-down\"]').length")).GetInt32() >= 1));
    }
}
