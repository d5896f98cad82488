using System.Net.Http.Json;
using System.Text.Json;
using Balancer.Tests.TestSupport;
using Microsoft.Playwright;

namespace Balancer.Tests.Management;

/// <summary>The status page at <c>GET /</c> of a running node, in Chromium driven by Playwright.</summary>
[Collection(SerialCollection.Name)]
public class StatusPageTests
{
    private const string Token = "status-page-token";

    /// <summary>A node with its admin API (and a token when given), one frontend, and quick health checks of <paramref name="backends"/>.</summary>
    private static Task<BalancerHost> StartNodeAsync(BackendSet backends, string? token = null) => BalancerHost.StartAsync($$"""
        balancer {
          node.admin { enabled = on, bind = "127.0.0.1:0"{{(token is null ? "" : $", token = \"{token}\"")}} }
          frontends.web { bind = "127.0.0.1:0", pool = app }
          pools.app {
            algorithm = round-robin
            health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
            {{backends.Hocon()}}
          }
        }
        """);

    private const string Rows = "JSON.stringify([...document.querySelectorAll('tr[data-backend]')].map(r => [r.dataset.backend, r.dataset.health, r.dataset.state]))";

    [Fact]
    public async Task StatusPage_FirstPaint_ComesFromTheServer_MembersFrontendsBackendsAndWhyABackendIsDown()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await StartNodeAsync(backends);
        using var http = new HttpClient();
        await http.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
        var url = await host.AdminUriAsync("/");
        await Eventually.Holds(async () => Assert.Contains("data-health=\"down\"", await http.GetStringAsync(url)), TimeSpan.FromSeconds(10));

        // What a browser paints before any script ran: scripts off, the page as served.
        await using var chromium = await Chromium.LaunchAsync();
        var page = await chromium.OpenAsync(url, javaScript: false);
        Assert.True((await page.ScreenshotAsync(new PageScreenshotOptions { FullPage = true })).Length > 10_000, "the screenshot has content");
        Assert.Matches(@"^akka\.tcp://", await page.Locator("tr[data-member] td").First.TextContentAsync());
        Assert.Equal("(1 of 1 up)", await page.Locator("#member-count").TextContentAsync());
        Assert.Equal(1, await page.Locator("tr[data-frontend='web']").CountAsync());
        Assert.Equal("""[["app/a","up","ready"],["app/b","down","ready"]]""", await Evaluate(page, Rows));
        Assert.Contains("HTTP 503", await page.Locator("tr[data-backend='app/b'] .reason").TextContentAsync());
        Assert.Equal(1, await page.Locator("section.card[data-pool='app']").CountAsync());
        Assert.Equal(3, await page.Locator("tr[data-backend='app/a'] button[data-action]").CountAsync());
        Assert.DoesNotContain("loading", await page.ContentAsync());
    }

    [Fact]
    public async Task StatusPage_ShowsEveryBackend_ItsLatencyAndErrors_AndAStateChangeWithoutReloading()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await StartNodeAsync(backends);
        await using var chromium = await Chromium.LaunchAsync();
        var page = await chromium.OpenAsync(await host.AdminUriAsync("/"));

        await Eventually.Holds(async () =>
            Assert.Equal("""[["app/a","up","ready"],["app/b","up","ready"],["app/c","up","ready"]]""", await Evaluate(page, Rows)),
            TimeSpan.FromSeconds(15));
        // Marks the document: a reload would lose the mark.
        await page.EvaluateAsync("window.__notReloaded = true");

        // Traffic, until the page has shown it: every backend a rate, a p50 and p99 latency and an
        // error rate (each between two readings, so shown while requests keep coming).
        using var http = new HttpClient();
        using var traffic = new CancellationTokenSource();
        var load = Task.Run(async () =>
        {
            while (!traffic.IsCancellationRequested)
            {
                await http.GetAsync(host.Uri("web"), traffic.Token).ContinueWith(_ => { });
            }
        });
        try
        {
            await Eventually.Holds(async () =>
            {
                var cells = await Evaluate(page, """
                    JSON.stringify([...document.querySelectorAll('tr[data-backend]')].map(r => {
                      const heads = [...r.closest('table').querySelectorAll('th')].map(h => h.textContent);
                      const cell = name => r.children[heads.indexOf(name)].textContent;
                      return [cell("Errors"), cell("p50 ms"), cell("p99 ms")];
                    }))
                    """);
                foreach (var row in JsonDocument.Parse(cells).RootElement.EnumerateArray())
                {
                    Assert.Equal("0.0%", row[0].GetString());
                    Assert.True(double.TryParse(row[1].GetString(), System.Globalization.CultureInfo.InvariantCulture, out var p50) && p50 > 0, cells);
                    Assert.True(double.TryParse(row[2].GetString(), System.Globalization.CultureInfo.InvariantCulture, out var p99) && p99 >= p50, cells);
                }
            }, TimeSpan.FromSeconds(15));
        }
        finally
        {
            await traffic.CancelAsync();
            await load;
        }
        Assert.True(await page.Locator("section.card[data-pool='app'] svg.chart polyline").CountAsync() == 1);

        using (var drain = await http.PostAsJsonAsync(await host.AdminUriAsync("/api/pools/app/backends/b/state"), new { state = "maint" }))
        {
            drain.EnsureSuccessStatusCode();
        }
        await http.PostAsync($"http://127.0.0.1:{backends["c"].Port}/control/health?ok=false", null);

        await Eventually.Holds(async () =>
            Assert.Equal("""[["app/a","up","ready"],["app/b","up","maint"],["app/c","down","ready"]]""", await Evaluate(page, Rows)),
            TimeSpan.FromSeconds(10));
        Assert.True(await page.EvaluateAsync<bool>("window.__notReloaded === true"), "the page was reloaded");
        // The change also shows up in the live event list.
        await Eventually.Holds(async () => Assert.True(await page.Locator("#events [data-kind='backend-down']").CountAsync() >= 1));
    }

    [Fact]
    public async Task StatusPage_DrainButton_RefusedWithoutTheToken_DrainsWithIt()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await StartNodeAsync(backends, Token);
        await using var chromium = await Chromium.LaunchAsync();
        var page = await chromium.OpenAsync(await host.AdminUriAsync("/"));
        var drainB = page.Locator("tr[data-backend='app/b'] button[data-action='drain']");

        // No token typed: the node refuses, the page says so, nothing changes.
        await drainB.ClickAsync();
        await Eventually.Holds(async () => Assert.StartsWith("refused (401)", await page.Locator("#action-result").TextContentAsync()));
        Assert.Equal("""[["app/a","up","ready"],["app/b","up","ready"]]""", await Evaluate(page, Rows));
        Assert.Equal(["ready", "ready"], host.Extension.Pools.Find("app")!.Snapshot.Backends.Select(b => b.AdminState.ToString().ToLowerInvariant()));

        // A wrong token: refused the same way (the last answer cleared first, so this one is read).
        await page.EvaluateAsync("document.getElementById('action-result').textContent = ''");
        await page.Locator("#token").FillAsync("not-the-token");
        await drainB.ClickAsync();
        await Eventually.Holds(async () => Assert.StartsWith("refused (401)", await page.Locator("#action-result").TextContentAsync()));

        // The token: drained on the node, and the page shows it.
        await page.Locator("#token").FillAsync(Token);
        await drainB.ClickAsync();
        await Eventually.Holds(async () => Assert.Equal("backend app/b: admin state drain", await page.Locator("#action-result").TextContentAsync()));
        await Eventually.Holds(async () => Assert.Equal("""[["app/a","up","ready"],["app/b","up","drain"]]""", await Evaluate(page, Rows)));
        Assert.Equal(["ready", "drain"], host.Extension.Pools.Find("app")!.Snapshot.Backends.Select(b => b.AdminState.ToString().ToLowerInvariant()));

        // And back to ready, through the same page.
        await page.Locator("tr[data-backend='app/b'] button[data-action='ready']").ClickAsync();
        await Eventually.Holds(async () => Assert.Equal("""[["app/a","up","ready"],["app/b","up","ready"]]""", await Evaluate(page, Rows)));
    }

    private static Task<string> Evaluate(IPage page, string script) => page.EvaluateAsync<string>(script);
}
