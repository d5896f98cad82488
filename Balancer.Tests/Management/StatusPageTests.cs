using System.Net.Http.Json;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Management;

/// <summary>The status page at <c>GET /</c> of a running node, in headless Chromium.</summary>
[Collection(SerialCollection.Name)]
public class StatusPageTests
{
    [Fact]
    public async Task StatusPage_ShowsEveryBackend_AndAStateChangeWithoutReloading()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              node.admin { enabled = on, bind = "127.0.0.1:0" }
              frontends.web { bind = "127.0.0.1:0", pool = app }
              pools.app {
                health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
                {{backends.Hocon()}}
              }
            }
            """);
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
