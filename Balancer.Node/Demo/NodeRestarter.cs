using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Balancer.Node.Demo;

/// <summary>
/// The demo's nodes (node i's admin API on 9109+i, its own HTTP frontend on 8080+i): starts one
/// again and reports how long it took to rejoin and whether it serves, and counts the members up.
/// Used for a node that exits by itself and for the ones <see cref="ChaosMonkey"/> kills.
/// </summary>
internal sealed class NodeRestarter(ChildProcess[] nodes, TextWriter output, string prefix)
{
    private static readonly TimeSpan RejoinTimeout = TimeSpan.FromSeconds(60);

    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, UseCookies = false, PooledConnectionLifetime = TimeSpan.Zero })
    {
        Timeout = TimeSpan.FromSeconds(5),
    };

    public ChildProcess[] Nodes => nodes;

    /// <summary>Members up and reachable as the last answering node saw them.</summary>
    public int MembersUp { get; private set; } = nodes.Length;

    /// <summary>"exit code 137 (SIGKILL)" for a process a signal ended, "exit code 1" otherwise.</summary>
    public static string DescribeExit(int exitCode) => exitCode switch
    {
        137 => "exit code 137 (SIGKILL)",
        143 => "exit code 143 (SIGTERM)",
        > 128 and < 160 => $"exit code {exitCode} (signal {exitCode - 128})",
        _ => $"exit code {exitCode}",
    };

    /// <summary>Starts node <paramref name="index"/> again and waits until the cluster has every node up again.</summary>
    public async Task RestartAsync(int index, CancellationToken stop)
    {
        var previous = nodes[index];
        var restarted = previous.Restart();
        nodes[index] = restarted;
        var since = Stopwatch.StartNew();
        if (!await restarted.WaitReadyAsync(RejoinTimeout, stop))
        {
            if (stop.IsCancellationRequested)
            {
                return;
            }
            // Let the output of a process that exited at once arrive before showing it.
            await Task.Delay(500, stop);
            output.WriteLine($"{prefix}{previous.Name} did not start again{(restarted.HasExited ? $" ({DescribeExit(restarted.ExitCode)})" : "")}; trying again later:{Environment.NewLine}{restarted.LastLines()}");
            return;
        }
        while (await MembersUpAsync(stop) != nodes.Length && since.Elapsed < RejoinTimeout)
        {
            await Task.Delay(250, stop);
        }
        var serves = await ServesAsync(index + 1, stop);
        output.WriteLine($"{prefix}{previous.Name} restarted (pid {restarted.Pid}), rejoined in {since.Elapsed.TotalSeconds:0.0} s ({MembersUp}/{nodes.Length} up), {(serves ? "serving" : "NOT serving")} on :{8080 + index + 1}");
    }

    /// <summary>Members up and reachable, asked of the first node that answers (0 when none does).</summary>
    public async Task<int> MembersUpAsync(CancellationToken stop)
    {
        for (var i = 0; i < nodes.Length; i++)
        {
            if (nodes[i].HasExited)
            {
                continue;
            }
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                timeout.CancelAfter(TimeSpan.FromSeconds(2));
                var cluster = await _http.GetFromJsonAsync<JsonElement>($"http://127.0.0.1:{9110 + i}/api/cluster", timeout.Token);
                MembersUp = cluster.GetProperty("members").EnumerateArray()
                    .Count(m => m.GetProperty("status").GetString() == "up" && m.GetProperty("reachable").GetBoolean());
                return MembersUp;
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException && !stop.IsCancellationRequested)
            {
            }
        }
        return 0;
    }

    private async Task<bool> ServesAsync(int node, CancellationToken stop)
    {
        try
        {
            using var response = await _http.GetAsync($"http://127.0.0.1:{8080 + node}/", stop);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }
}
