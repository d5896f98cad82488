using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Chaos;

/// <summary>
/// The demo as a newcomer runs it, and its chaos mode as an operator uses it: <c>balancer demo</c>
/// with real node and backend processes on the demo ports, two SIGKILLs of a node under a load of
/// sticky sessions over the shared port, then Ctrl+C (SIGINT) and a check that nothing is left.
/// </summary>
[Collection(SerialCollection.Name)]
public class ChaosProcessTests : IAsyncLifetime
{
    private readonly List<NodeProcess> _processes = new();

    public Task InitializeAsync() => Task.CompletedTask;

    [Fact]
    public async Task Demo_WithChaos_TwoKills_SessionsKept_OnlyInFlightRequestsFail_ClusterWholeAgain_NothingLeftAfterCtrlC()
    {
        var demo = Start("demo", "--nodes", "3", "--chaos", "8s", "--kills", "2");
        await demo.WaitForOutputAsync("Balancer demo: 3 node(s)", TimeSpan.FromSeconds(60));
        Assert.Contains("http://127.0.0.1:8080/", demo.Output);
        Assert.Contains("ctl 127.0.0.1:9110 cluster show", demo.Output);
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) })
        {
            using var response = await http.GetAsync("http://127.0.0.1:8080/");
            response.EnsureSuccessStatusCode();
            Assert.Contains(response.Headers.GetValues("X-Backend").Single(), new[] { "a", "b", "c" });
        }

        await demo.WaitForOutputAsync("chaos: 2 kills done", TimeSpan.FromSeconds(150));
        var rejoined = Regex.Matches(demo.Output, @"chaos: node\d restarted \(pid \d+\), rejoined in [\d.]+ s \(3/3 up\), serving");
        Assert.True(rejoined.Count == 2, "both killed nodes came back and serve:\n" + demo.Output);
        var ctl = Start("ctl", "127.0.0.1:9110", "cluster", "show");
        Assert.Equal(0, await ctl.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("Count: 3 members, 3 up, 0 unreachable", ctl.Output);
        await Task.Delay(2000);

        Balancer.Node.Posix.Signal(demo.Pid, 2);
        Assert.Equal(0, await demo.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        var totals = Regex.Match(demo.Output, @"chaos totals: requests (\d+) ok (\d+) failed (\d+) \((\d+) in flight at a kill, (\d+) other\) \| sessions 200 checked (\d+) kept (\d+) moved (\d+) \| members up \d/3 \| kills (\d+)");
        Assert.True(totals.Success, "no totals line:\n" + demo.Output);
        int Total(int group) => int.Parse(totals.Groups[group].Value);
        Console.WriteLine($"chaos: {totals.Value}; {Regex.Match(demo.Output, @"every process stopped \([\d.]+ s\)").Value}");
        Assert.True(Total(1) > 500, "the load kept running");
        Assert.True(Total(5) == 0, "requests failed away from any kill:\n" +
            string.Join('\n', demo.Output.Split('\n').Where(l => l.Contains("failed away from any kill", StringComparison.Ordinal))));
        Assert.True(Total(6) > 300, "sessions were checked again after their first request");
        Assert.Equal(0, Total(8));
        Assert.Equal(2, Total(9));

        // Ctrl+C left nothing behind: every demo port is closed again.
        foreach (var port in new[] { 8080, 8081, 8082, 8083, 7070, 9001, 9002, 9003, 9110, 9111, 9112, 4053, 4054, 4055 })
        {
            await Eventually.Holds(() => Assert.False(Listening(port), $"something still listens on {port}"), TimeSpan.FromSeconds(20));
        }
    }

    [Fact]
    public async Task Demo_HintsRunAsPrinted_ANodeKilledAsTold_IsBackAndServingWithin15s_CtrlCStopsAllAndRemovesTheState()
    {
        var demo = Start("demo", "--nodes", "3");
        await demo.WaitForOutputAsync("kill a node like a crash would", TimeSpan.FromSeconds(90));
        var state = Path.Combine(global::Balancer.Tests.Node.CommandLineTests.RepositoryRoot(), "data", "demo");
        Assert.True(File.Exists(Path.Combine(state, "logs", "node1.log")), "node1 logs to data/demo/logs/node1.log");
        Assert.Contains("node duty: active", File.ReadAllText(Path.Combine(state, "logs", "node1.log")));

        // Every command the demo prints runs as printed, from where the demo runs (but `cluster
        // tail`, which follows events until it is stopped; curl is told to fail on an HTTP error).
        var printed = Regex.Matches(demo.Output, @"^\s+[^:\n]+:\s{2,}(\S.* ctl 127\.0\.0\.1:9110 .+?)\s*$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(4, printed.Count);
        var curls = Regex.Matches(demo.Output, @"^\s+[^:\n]+:\s{2,}(curl .+?)\s*$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(5, curls.Count);
        foreach (var command in printed.Where(c => !c.EndsWith("cluster tail", StringComparison.Ordinal)).Concat(curls.Select(c => c.Replace("curl ", "curl -fsS "))))
        {
            var (code, output) = await ToolProcess.ShellAsync(command, AppContext.BaseDirectory, TimeSpan.FromSeconds(20));
            Assert.True(code == 0, $"`{command}` exited with {code}:\n{output}");
        }
        using (var admin = new HttpClient())
        {
            // The printed drain took effect.
            var backends = System.Text.Json.JsonDocument.Parse(await admin.GetStringAsync("http://127.0.0.1:9110/api/pools/app/backends")).RootElement;
            Assert.Equal("drain", backends.EnumerateArray().Single(b => b.GetProperty("name").GetString() == "b").GetProperty("adminState").GetString());
        }

        // The kill the demo suggests, literally: the node comes back by itself and serves its own port.
        var kill = Regex.Match(demo.Output, @"kill a node like a crash would:\s+(kill -9 \d+)\s+\(node(\d)");
        Assert.True(kill.Success, demo.Output);
        var node = int.Parse(kill.Groups[2].Value);
        var killed = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0, (await ToolProcess.ShellAsync(kill.Groups[1].Value, AppContext.BaseDirectory, TimeSpan.FromSeconds(10))).Code);
        try
        {
            await demo.WaitForOutputAsync($"balancer demo: node{node} restarted (pid", TimeSpan.FromSeconds(15));
        }
        catch (TimeoutException e)
        {
            // What each node's log says about membership: why the restarted node is not back.
            throw new TimeoutException(e.Message + string.Concat(Enumerable.Range(1, 3).Select(n => $"\nnode{n}.log:\n  " + string.Join("\n  ",
                File.ReadLines(Path.Combine(state, "logs", $"node{n}.log")).Where(l => l.Contains("Cluster Node", StringComparison.Ordinal) || l.Contains("cluster:", StringComparison.Ordinal)
                    || l.Contains("InitJoin", StringComparison.Ordinal) || l.Contains("SBR", StringComparison.Ordinal) || l.Contains("incarnation", StringComparison.Ordinal)
                    || l.Contains("quarantin", StringComparison.OrdinalIgnoreCase) || l.Contains("Welcome", StringComparison.Ordinal) || l.Contains("ERROR", StringComparison.Ordinal)).TakeLast(40)))));
        }
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) })
        {
            await Eventually.Holds(async () => (await http.GetAsync($"http://127.0.0.1:{8080 + node}/")).EnsureSuccessStatusCode(), TimeSpan.FromSeconds(Math.Max(1, 15 - killed.Elapsed.TotalSeconds)));
        }
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(15), $"back after {killed.Elapsed.TotalSeconds:0.0} s");
        Assert.Contains($"balancer demo: node{node} exited (exit code 137 (SIGKILL)); starting it again", demo.Output);
        Assert.False(demo.HasExited);

        Balancer.Node.Posix.Signal(demo.Pid, 2);
        Assert.Equal(0, await demo.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.False(Directory.Exists(state), "a clean stop removes data/demo");
        foreach (var port in new[] { 8080, 8081, 8082, 8083, 9001, 9110, 9111, 9112, 4053, 4054, 4055 })
        {
            await Eventually.Holds(() => Assert.False(Listening(port), $"something still listens on {port}"), TimeSpan.FromSeconds(20));
        }
    }

    private static bool Listening(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Connect(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private NodeProcess Start(params string[] args)
    {
        var process = NodeProcess.Start(args);
        _processes.Add(process);
        return process;
    }

    public async Task DisposeAsync() => await Task.WhenAll(_processes.Select(p => p.DisposeAsync().AsTask()));
}
