using System.Diagnostics;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Cluster;

/// <summary>
/// Three <c>balancer run</c> processes as three hosts (198.18.0.1-3, one network namespace each)
/// in front of three demo backends on a fourth (198.18.0.10), with faults made on the network
/// between them while sticky and new sessions run through every node. The clients (this test)
/// reach every node throughout: only the nodes' links to each other fail.
/// </summary>
[Collection(SerialCollection.Name)]
public class NetworkFaultTests : IAsyncLifetime
{
    private const string Token = "fault-test-token";
    private const string Mode = "header:X-Session";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly List<NodeProcess> _processes = new();
    private readonly string _directory = Directory.CreateTempSubdirectory("balancer-faults-").FullName;
    private TestNetwork? _network;
    private NodeProcess[] _nodes = [];

    private TestNetwork Network => _network!;

    public async Task InitializeAsync()
    {
        if (TestNetwork.Unavailable() is { } why)
        {
            Assert.Fail(why);
        }
        _network = await TestNetwork.CreateAsync(1, 2, 3, 10);
        foreach (var (name, port) in new[] { ("a", 9001), ("b", 9002), ("c", 9003) })
        {
            var backend = Start(Network.Namespace(10), "backend", "--port", port.ToString(), "--name", name, "--bind", TestNetwork.Address(10).ToString());
            await backend.WaitForOutputAsync("listening on", StartTimeout);
        }
    }

    /// <summary>Nodes 1-3, once each is ready and sees all three up; node 1, the first seed, forms the cluster and is its oldest member.</summary>
    private async Task StartNodesAsync(string mode = "active-active")
    {
        _nodes = Enumerable.Range(1, 3).Select(i => Start(Network.Namespace(i), "run", "--config", WriteConfig(i, mode))).ToArray();
        foreach (var node in _nodes)
        {
            await node.WaitForOutputAsync(" ready", StartTimeout);
            await node.WaitForOutputAsync("(3 up)", StartTimeout);
        }
    }

    /// <summary>
    /// Faults 1 and 2: node 3 cut from the other two (both directions) for 20 s, clients still
    /// reaching it: a 2 | 1 split. Both sides serve throughout; node 3, downed, rejoins by itself
    /// after the heal; a drain made on the majority side meanwhile reaches it.
    /// </summary>
    [Fact]
    public async Task IsolatedNode_EverySideServes_NoSessionMoves_RejoinsByItselfAfterTheHeal()
    {
        await StartNodesAsync();
        using var client = new SessionClient();
        var sessions = await client.CreateAsync(3, 60);
        var loads = Enumerable.Range(1, 3).Select(node => client.Traffic(node, sessions)).ToList();
        await Task.Delay(TimeSpan.FromSeconds(1));

        var cutAt = Stopwatch.StartNew();
        foreach (var other in new[] { 1, 2 })
        {
            await Network.CutAsync(3, other);
            await Network.CutAsync(other, 3);
        }
        await WaitUntilAsync(async () => (await CtlAsync(1, "cluster", "show")).Contains("Count: 2 members"), TimeSpan.FromSeconds(20), "node 3 removed by the majority");
        var removedAfter = cutAt.Elapsed;
        Assert.Equal(0, (await CtlCodeAsync(1, "backend", "drain", "app/c")).Code);
        await WaitUntilAsync(() => Task.FromResult(_nodes[2].Output.Contains("rejoining (incarnation 2)")), TimeSpan.FromSeconds(20), "node 3 rejoining on its side");
        await Task.Delay(TimeSpan.FromSeconds(20) - cutAt.Elapsed is { Ticks: > 0 } rest ? rest : TimeSpan.Zero);

        foreach (var other in new[] { 1, 2 })
        {
            await Network.HealAsync(3, other);
            await Network.HealAsync(other, 3);
        }
        var healedAt = Stopwatch.StartNew();
        await WaitUntilAsync(async () => (await CtlAsync(1, "cluster", "show")).Contains("Count: 3 members, 3 up"), TimeSpan.FromSeconds(15), "every node up again after the heal");
        var wholeAfter = healedAt.Elapsed;
        await WaitUntilAsync(async () => (await CtlAsync(3, "backends", "app")).Split('\n').Any(l => l.StartsWith("app/c ", StringComparison.Ordinal) && l.Contains(" drain ")),
            TimeSpan.FromSeconds(2), "the drain made during the split on node 3, 2 s after the cluster was whole");
        await Task.Delay(TimeSpan.FromSeconds(2));
        var outcomes = new List<TrafficOutcome>();
        foreach (var load in loads)
        {
            outcomes.Add(await load.StopAsync());
        }
        var moved = await client.MovedAsync(sessions);
        Console.WriteLine($"isolation: node 3 removed by the majority {removedAfter.TotalSeconds:0.0} s after the cut; cluster whole {wholeAfter.TotalSeconds:0.0} s after the heal; " +
            $"traffic on nodes 1-3: {string.Join("; ", outcomes)}; {moved} of {sessions.Count * 3} session lookups moved");
        Assert.All(outcomes, o => Assert.True(o.Failed == 0 && o.Moved == 0, string.Join("; ", outcomes)));
        Assert.All(outcomes, o => Assert.True(o.Served > 20, string.Join("; ", outcomes)));
        Assert.Equal(0, moved);
        Assert.All(_nodes, n => Assert.False(n.HasExited));
    }

    /// <summary>
    /// Fault 3: an asymmetric cut, node 1 cannot reach node 2 while both reach node 3, for 20 s. The
    /// resolver downs what it must; every node serves throughout and the cluster is whole again
    /// after the heal.
    /// </summary>
    [Fact]
    public async Task AsymmetricCut_EveryNodeServes_NoSessionMoves_WholeAgainAfterTheHeal()
    {
        await StartNodesAsync();
        using var client = new SessionClient();
        var sessions = await client.CreateAsync(1, 60);
        var loads = Enumerable.Range(1, 3).Select(node => client.Traffic(node, sessions)).ToList();
        await Task.Delay(TimeSpan.FromSeconds(1));
        await Network.CutAsync(1, 2);
        await WaitUntilAsync(async () => !(await CtlAsync(3, "cluster", "show")).Contains("Count: 3 members, 3 up, 0 unreachable"), TimeSpan.FromSeconds(15), "the cut seen by node 3");
        await Task.Delay(TimeSpan.FromSeconds(20));
        await Network.HealAsync(1, 2);
        var healedAt = Stopwatch.StartNew();
        await WaitUntilAsync(async () => (await CtlAsync(3, "cluster", "show")).Contains("Count: 3 members, 3 up, 0 unreachable"), TimeSpan.FromSeconds(15), "every node up again after the heal");
        var wholeAfter = healedAt.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(2));
        var outcomes = new List<TrafficOutcome>();
        foreach (var load in loads)
        {
            outcomes.Add(await load.StopAsync());
        }
        var moved = await client.MovedAsync(sessions);
        var rejoins = _nodes.Select(n => Count(n.Output, "rejoining (incarnation")).ToList();
        Console.WriteLine($"asymmetric cut: cluster whole {wholeAfter.TotalSeconds:0.0} s after the heal; rejoins of nodes 1-3: {string.Join(", ", rejoins)}; " +
            $"traffic on nodes 1-3: {string.Join("; ", outcomes)}; {moved} of {sessions.Count * 3} session lookups moved");
        Assert.All(outcomes, o => Assert.True(o.Failed == 0 && o.Moved == 0, string.Join("; ", outcomes)));
        Assert.Equal(0, moved);
        Assert.All(_nodes, n => Assert.False(n.HasExited));
    }

    /// <summary>
    /// Active-passive under faults 1-2: the active node (node 1, the oldest) cut from the other two
    /// for 20 s. At most one node serves the shared frontend 5 s after the cut (the cut-off active
    /// node gives up at once, without waiting to be downed), exactly one 5 s after the heal.
    /// </summary>
    [Fact]
    public async Task ActivePassive_ActiveNodeIsolated_AtMostOneActiveFiveSecondsAfterTheCut_ExactlyOneAfterTheHeal()
    {
        await StartNodesAsync("active-passive");
        await WaitUntilAsync(async () => await ServingAsync() is [1], TimeSpan.FromSeconds(10), "node 1 the only one serving");
        var cutAt = Stopwatch.StartNew();
        foreach (var other in new[] { 2, 3 })
        {
            await Network.CutAsync(1, other);
            await Network.CutAsync(other, 1);
        }
        // When node 1 stops serving, and when another starts, measured from the cut.
        TimeSpan? gaveUp = null, tookOver = null;
        var mostAtOnce = 0;
        while (cutAt.Elapsed < TimeSpan.FromSeconds(20))
        {
            var serving = await ServingAsync();
            if (cutAt.Elapsed > TimeSpan.FromSeconds(5))
            {
                mostAtOnce = Math.Max(mostAtOnce, serving.Count);
            }
            gaveUp ??= serving.Contains(1) ? null : cutAt.Elapsed;
            tookOver ??= serving.Any(n => n != 1) ? cutAt.Elapsed : null;
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
        foreach (var other in new[] { 2, 3 })
        {
            await Network.HealAsync(1, other);
            await Network.HealAsync(other, 1);
        }
        var healedAt = Stopwatch.StartNew();
        await WaitUntilAsync(async () => (await CtlAsync(2, "cluster", "show")).Contains("Count: 3 members, 3 up, 0 unreachable"), TimeSpan.FromSeconds(15), "every node up again after the heal");
        var wholeAfter = healedAt.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(5) - healedAt.Elapsed is { Ticks: > 0 } rest ? rest : TimeSpan.Zero);
        var afterHeal = await ServingAsync();
        Console.WriteLine($"active-passive isolation: node 1 stopped serving {gaveUp?.TotalSeconds:0.0} s after the cut, another node served from {tookOver?.TotalSeconds:0.0} s; " +
            $"at most {mostAtOnce} serving from 5 s after the cut; cluster whole {wholeAfter.TotalSeconds:0.0} s after the heal; serving 5 s after it: node(s) {string.Join(", ", afterHeal)}");
        Assert.True(gaveUp is { } g && g < TimeSpan.FromSeconds(5), $"node 1 still served {gaveUp} after the cut");
        Assert.NotNull(tookOver);
        Assert.True(mostAtOnce <= 1, $"{mostAtOnce} nodes served at once 5 s after the cut");
        Assert.Single(afterHeal);
        Assert.All(_nodes, n => Assert.False(n.HasExited));
    }

    /// <summary>The nodes whose frontend (198.18.0.N:8080) accepts a connection now.</summary>
    private static async Task<List<int>> ServingAsync()
    {
        var serving = new List<int>();
        foreach (var node in new[] { 1, 2, 3 })
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await socket.ConnectAsync(new System.Net.IPEndPoint(TestNetwork.Address(node), 8080), timeout.Token);
                serving.Add(node);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException)
            {
            }
        }
        return serving;
    }

    private static int Count(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }

    private string WriteConfig(int node, string mode)
    {
        var address = TestNetwork.Address(node);
        var backends = TestNetwork.Address(10);
        var path = Path.Combine(_directory, $"node{node}.conf");
        File.WriteAllText(path, $$"""
            akka.remote.dot-netty.tcp { hostname = "{{address}}", port = 4053 }
            akka.cluster.seed-nodes = ["akka.tcp://balancer@{{TestNetwork.Address(1)}}:4053", "akka.tcp://balancer@{{TestNetwork.Address(2)}}:4053", "akka.tcp://balancer@{{TestNetwork.Address(3)}}:4053"]
            balancer {
              node.mode = {{mode}}
              node.admin { bind = "{{address}}:9110", token = "{{Token}}" }
              node.data-dir = "{{Path.Combine(_directory, $"data{node}")}}"
              frontends.web { mode = http, bind = ["{{address}}:8080"], pool = app }
              pools.app {
                affinity { mode = "{{Mode}}", write = majority }
                health-check { kind = http, path = "/healthz" }
                backends { a = "{{backends}}:9001", b = "{{backends}}:9002", c = "{{backends}}:9003" }
              }
            }
            """);
        return path;
    }

    private async Task<string> CtlAsync(int node, params string[] args) => (await CtlCodeAsync(node, args)).Output;

    private async Task<(int Code, string Output)> CtlCodeAsync(int node, params string[] args)
    {
        var ctl = Start(null, ["ctl", $"{TestNetwork.Address(node)}:9110", "--token", Token, .. args]);
        var code = await ctl.WaitForExitAsync(TimeSpan.FromSeconds(20));
        return (code, ctl.Output);
    }

    private NodeProcess Start(string? netns, params string[] args)
    {
        var process = NodeProcess.StartIn(netns, args);
        _processes.Add(process);
        return process;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < timeout, $"not within {timeout.TotalSeconds:0} s: {what}");
            await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
    }

    public async Task DisposeAsync()
    {
        // Processes first (a stopped one too), then the network they ran on.
        await Task.WhenAll(_processes.Select(p => p.DisposeAsync().AsTask()));
        if (_network is not null)
        {
            await _network.DisposeAsync();
        }
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Header sessions through the nodes' frontends (198.18.0.N:8080), each request on a new connection.</summary>
    private sealed class SessionClient : IDisposable
    {
        private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(10) };

        public async Task<List<(string Session, string Backend)>> CreateAsync(int node, int count)
        {
            var sessions = new List<(string, string)>();
            for (var i = 0; i < count; i++)
            {
                var session = $"s-{Guid.NewGuid():N}";
                sessions.Add((session, await BackendOfAsync(node, session)));
            }
            return sessions;
        }

        public async Task<string> BackendOfAsync(int node, string session)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{TestNetwork.Address(node)}:8080/");
            request.Headers.ConnectionClose = true;
            request.Headers.Add("X-Session", session);
            using var response = await _http.SendAsync(request);
            response.EnsureSuccessStatusCode();
            return response.Headers.GetValues("X-Backend").Single();
        }

        /// <summary>How many lookups of <paramref name="sessions"/> on nodes 1-3 found another backend.</summary>
        public async Task<int> MovedAsync(IEnumerable<(string Session, string Backend)> sessions)
        {
            var moved = 0;
            foreach (var (session, backend) in sessions)
            {
                for (var node = 1; node <= 3; node++)
                {
                    moved += await BackendOfAsync(node, session) == backend ? 0 : 1;
                }
            }
            return moved;
        }

        /// <summary>Every known session in turn through <paramref name="node"/> (its backend must not change) and a new session each time, until stopped.</summary>
        public TrafficLoop Traffic(int node, IReadOnlyList<(string Session, string Backend)> sessions)
        {
            var loop = new TrafficLoop();
            loop.Running = Task.Run(async () =>
            {
                while (!loop.Stop.IsCancellationRequested)
                {
                    foreach (var (session, backend) in sessions)
                    {
                        if (loop.Stop.IsCancellationRequested)
                        {
                            break;
                        }
                        try
                        {
                            loop.Count(moved: await BackendOfAsync(node, session) != backend);
                            await BackendOfAsync(node, $"n-{Guid.NewGuid():N}");
                            loop.Count(moved: false);
                        }
                        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                        {
                            loop.Fail(e.Message);
                        }
                    }
                }
            });
            return loop;
        }

        public void Dispose() => _http.Dispose();
    }
}
