using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Management;

/// <summary><c>balancer ctl top</c> in a real terminal: tmux runs it, the test types keys and reads the screen.</summary>
[Collection(SerialCollection.Name)]
public class CtlTopTests
{
    [Fact]
    public async Task Top_UnderTmux_ShowsEveryBackendsRate_AndItsKeysDrainTheSelectedBackend()
    {
        if (!File.Exists("/usr/bin/tmux"))
        {
            // .ci/run installs tmux; a developer machine without it cannot run this test.
            Assert.Fail("tmux is not installed (apt-get install tmux)");
        }
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              node.admin { enabled = on, bind = "127.0.0.1:0" }
              frontends.web { bind = "127.0.0.1:0", pool = app }
              pools.app { algorithm = round-robin, {{backends.Hocon()}} }
            }
            """);
        var admin = (await host.AdminUriAsync("/")).Authority;
        // A tmux server of this test's own, so that stopping it touches nothing else.
        var server = $"balancer-top-{Guid.NewGuid():N}";
        using var traffic = new CancellationTokenSource();
        var load = Task.Run(async () =>
        {
            using var http = new HttpClient();
            while (!traffic.IsCancellationRequested)
            {
                await http.GetAsync(host.Uri("web"), traffic.Token).ContinueWith(_ => { });
                await Task.Delay(5, traffic.Token).ContinueWith(_ => { });
            }
        });
        try
        {
            await TmuxAsync(server, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                $"'{Path.Combine(AppContext.BaseDirectory, "balancer")}' ctl {admin} top");

            // Every backend, up and ready, each with a rate while the load runs.
            var busy = new Dictionary<string, Row>();
            await Eventually.Holds(async () =>
            {
                var screen = await TmuxAsync(server, "capture-pane", "-p", "-t", "top");
                busy = Rows(screen);
                Assert.True(busy.Count == 3 && busy.Values.All(r => r.Health == "up" && r.State == "ready" && r.Rate > 0), screen);
            }, TimeSpan.FromSeconds(20));
            Assert.Equal(["app/a", "app/b", "app/c"], busy.Keys.Order());

            // The load stops: the rates fall to zero on the same screen.
            await traffic.CancelAsync();
            await load;
            await Eventually.Holds(async () =>
            {
                var screen = await TmuxAsync(server, "capture-pane", "-p", "-t", "top");
                Assert.True(Rows(screen).Values.All(r => r.Rate == 0), screen);
            }, TimeSpan.FromSeconds(10));

            // ↓ selects app/b, d drains it through the node's admin API.
            await TmuxAsync(server, "send-keys", "-t", "top", "Down");
            await TmuxAsync(server, "send-keys", "-t", "top", "d");
            using var http = new HttpClient();
            await Eventually.Holds(async () =>
            {
                var states = await http.GetFromJsonAsync<List<Dictionary<string, object>>>(await host.AdminUriAsync("/api/pools/app/backends"));
                Assert.Equal(["ready", "drain", "ready"], states!.Select(b => b["adminState"].ToString()));
            }, TimeSpan.FromSeconds(10));
            await Eventually.Holds(async () =>
            {
                var screen = await TmuxAsync(server, "capture-pane", "-p", "-t", "top");
                Assert.True(Rows(screen).TryGetValue("app/b", out var b) && b.State == "drain", screen);
            }, TimeSpan.FromSeconds(10));

            // q leaves: the session (only the command ran in it) ends.
            await TmuxAsync(server, "send-keys", "-t", "top", "q");
            await Eventually.Holds(async () => Assert.False(await HasSessionAsync(server)), TimeSpan.FromSeconds(10));
        }
        finally
        {
            await traffic.CancelAsync();
            await load;
            await ToolProcess.RunAsync("tmux", ["-L", server, "kill-server"], AppContext.BaseDirectory, TimeSpan.FromSeconds(10));
        }
    }

    private sealed record Row(string Health, string State, double Rate);

    /// <summary>The backend rows of the screen: name, health, state and requests a second ("-" before a second reading counts as 0).</summary>
    private static Dictionary<string, Row> Rows(string screen) =>
        Regex.Matches(screen, @"(app/[abc])\s*│\s*(\w+)\s*│\s*(\w+)\s*│\s*([\d.]+|-)\s*│")
            .ToDictionary(m => m.Groups[1].Value, m => new Row(m.Groups[2].Value, m.Groups[3].Value, m.Groups[4].Value == "-" ? 0 : double.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>A tmux command against this test's server; its output, or an exception naming what tmux said.</summary>
    private static async Task<string> TmuxAsync(string server, params string[] args)
    {
        var (code, output) = await ToolProcess.RunAsync("tmux", ["-L", server, .. args], AppContext.BaseDirectory, TimeSpan.FromSeconds(10));
        return code == 0 ? output : throw new InvalidOperationException($"tmux {string.Join(' ', args)} exited {code}: {output}");
    }

    private static async Task<bool> HasSessionAsync(string server) =>
        (await ToolProcess.RunAsync("tmux", ["-L", server, "has-session", "-t", "top"], AppContext.BaseDirectory, TimeSpan.FromSeconds(10))).Code == 0;
}
