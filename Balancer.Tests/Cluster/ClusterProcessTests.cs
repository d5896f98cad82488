using System.Text.RegularExpressions;
using System.Diagnostics;
using System.Net;
using Balancer.Tests.Node;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Cluster;

/// <summary>
/// The shipped hocon/node1-3.conf as three real <c>balancer run</c> processes (remoting 4053-4055,
/// shared :8080 by SO_REUSEPORT, own :8081-8083) in front of three real <c>balancer backend</c>
/// processes on :9001-9003; nodes are killed with SIGKILL. Every process is killed by PID at the end.
/// </summary>
[Collection(SerialCollection.Name)]
public class ClusterProcessTests : IAsyncLifetime
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly List<NodeProcess> _processes = new();
    private readonly string _dataDir = Directory.CreateTempSubdirectory("balancer-cluster-").FullName;
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(5) };

    public async Task InitializeAsync()
    {
        foreach (var (name, port) in new[] { ("a", 9001), ("b", 9002), ("c", 9003) })
        {
            var backend = Start("backend", "--port", port.ToString(), "--name", name);
            await backend.WaitForOutputAsync("listening on", StartTimeout);
        }
    }

    [Fact]
    public async Task ActiveActive_ProbeVerdictEverywhere_ShardMovesOnKill_NoRequestLostAfterKill()
    {
        // Started in reverse order: the cluster forms whichever order the nodes come up in.
        var nodes = new NodeProcess[3];
        for (var i = 3; i >= 1; i--)
        {
            nodes[i - 1] = StartNode(i);
        }
        foreach (var node in nodes)
        {
            await node.WaitForOutputAsync(" ready", StartTimeout);
            await node.WaitForOutputAsync("(3 up)", StartTimeout);
        }
        await WaitUntilAsync(() => nodes.Count(n => n.Output.Contains("probing app/")) > 0 &&
            new[] { "a", "b", "c" }.All(b => nodes.Any(n => n.Output.Contains($"probing app/{b} "))), TimeSpan.FromSeconds(30), "probes started");

        // 1. A probe's verdict reaches every node: out of rotation everywhere within probe detection + 1 s.
        await SetHealthAsync(9002, false);
        var flipped = Stopwatch.StartNew();
        await WaitUntilAsync(() => nodes.Any(n => n.Output.Contains("backend b is DOWN")), TimeSpan.FromSeconds(10), "b down on the probing node");
        var detected = flipped.Elapsed;
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("backend b is DOWN")), TimeSpan.FromSeconds(10), "b down on every node");
        var everywhere = flipped.Elapsed;
        Assert.True(everywhere - detected < TimeSpan.FromSeconds(1), $"detected after {detected}, out of rotation everywhere only after {everywhere}");
        for (var port = 8081; port <= 8083; port++)
        {
            for (var i = 0; i < 6; i++)
            {
                Assert.NotEqual("b", await BackendOfAsync(port));
            }
        }
        await SetHealthAsync(9002, true);
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("backend b is UP")), TimeSpan.FromSeconds(10), "b up again on every node");

        // 2. kill -9 of the node probing b, under a load of new connections on the shared port.
        var host = nodes.MaxBy(n => LastLogTime(n.Output, "probing app/b "))!;
        var survivors = nodes.Where(n => n != host).ToList();
        var probingBefore = survivors.Select(n => Count(n.Output, "probing app/b ")).ToList();
        using var load = new NewConnectionLoad(new Uri("http://127.0.0.1:8080/"));
        await Task.Delay(1000);
        var downBeforeKill = survivors.Select(n => Count(n.Output, "backend b is DOWN")).ToList();
        await host.KillAsync();
        var killedAt = Stopwatch.GetTimestamp();
        // b fails right away, while its probe's node is dead and not yet downed: every survivor
        // still takes it out within 5 s plus the check's own detection (2 checks, 1 s apart, 500 ms timeout).
        await SetHealthAsync(9002, false);
        await WaitUntilAsync(() => survivors.Select((n, i) => Count(n.Output, "backend b is DOWN") > downBeforeKill[i]).All(x => x), TimeSpan.FromSeconds(20), "b down on the survivors after the kill");
        var downAfterKill = Stopwatch.GetElapsedTime(killedAt);
        Assert.True(downAfterKill < TimeSpan.FromSeconds(5 + 2 * 1 + 0.5), $"b out of rotation on the survivors only {downAfterKill.TotalSeconds:0.0} s after kill -9 of its prober");
        await SetHealthAsync(9002, true);
        await WaitUntilAsync(() => survivors.Select((n, i) => Count(n.Output, "probing app/b ") > probingBefore[i]).Any(x => x), TimeSpan.FromSeconds(15), "b probed again by a survivor");
        var reprobedAfter = Stopwatch.GetElapsedTime(killedAt);
        await WaitUntilAsync(() => survivors.All(n => Count(n.Output, "backend b is UP") > 1), TimeSpan.FromSeconds(15), "b up again on the survivors");
        await Task.Delay(1000);
        load.Stop();
        var lost = load.Results.Where(r => r.Started > killedAt && !r.Ok).ToList();
        Assert.True(lost.Count == 0, $"{lost.Count} of {load.Results.Count(r => r.Started > killedAt)} requests started after the kill failed: {lost.FirstOrDefault().Error}");
        Assert.True(load.Results.Count(r => r.Started > killedAt) > 20, "the load kept running after the kill");

        // 3. A later failure of b is still detected cluster-wide by the moved probe.
        var downBefore = survivors.Select(n => Count(n.Output, "backend b is DOWN")).ToList();
        await SetHealthAsync(9002, false);
        await WaitUntilAsync(() => survivors.Select((n, i) => Count(n.Output, "backend b is DOWN") > downBefore[i]).All(x => x), TimeSpan.FromSeconds(10), "b down again on the survivors");
        Console.WriteLine($"cluster: probe detected after {detected.TotalMilliseconds:0} ms, every node after {everywhere.TotalMilliseconds:0} ms; b failing at kill -9 of its prober out of rotation after {downAfterKill.TotalSeconds:0.0} s; sharded probe of b resumed {reprobedAfter.TotalSeconds:0.0} s after the kill");
    }

    [Fact]
    public async Task Reload_AddsAPoolChangesAnAlgorithmAddsAndRemovesAFrontend_UnderLoad_NothingFailsOrCloses_AndMistakesChangeNothing()
    {
        var reloadable = Path.Combine(_dataDir, "reloadable.conf");
        File.WriteAllText(reloadable, """
            balancer.frontends.extra-old { mode = tcp, bind = "127.0.0.1:7090", reuse-port = on, pool = app }
            """);
        var nodes = await StartThreeNodesAsync(["--config", reloadable]);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("http://127.0.0.1:8080/")).StatusCode);

        // The steady load: keep-alive requests to every node's own port, and a TCP connection held
        // open through each node's raw port; connections opened are counted.
        var connects = 0;
        using var keepAlive = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            ConnectCallback = async (context, token) =>
            {
                Interlocked.Increment(ref connects);
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, token);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            },
        }) { Timeout = TimeSpan.FromSeconds(5) };
        await using var load = KeepAliveLoad.Start(keepAlive, pause: TimeSpan.FromMilliseconds(5));
        var held = new List<System.Net.Sockets.Socket>();
        for (var port = 7071; port <= 7073; port++)
        {
            held.Add(await TcpClients.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)));
        }
        async Task AssertHeldConnectionsAnswerAsync()
        {
            foreach (var socket in held)
            {
                await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
                var answer = new byte[4096];
                var read = await socket.ReceiveAsync(answer.AsMemory()).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
                Assert.StartsWith("HTTP/1.1 200", System.Text.Encoding.ASCII.GetString(answer, 0, read));
            }
        }
        await AssertHeldConnectionsAnswerAsync();
        await WaitUntilAsync(() => load.Served > 50, TimeSpan.FromSeconds(20), "the load running");
        var connectsBefore = Volatile.Read(ref connects);
        using (var old = await TcpClients.ConnectAsync(new IPEndPoint(IPAddress.Loopback, 7090)))
        {
        }

        // 1. Saved over the file every node reads: each sees the change and applies it.
        const string Reloaded = """
            balancer.pools.api {
              health-check.kind = none
              backends { a = "127.0.0.1:9001", c = "127.0.0.1:9003" }
            }
            balancer.pools.app.algorithm = least-connections
            balancer.frontends.extra-new { bind = "127.0.0.1:7091", reuse-port = on, pool = api }
            """;
        File.WriteAllText(reloadable, Reloaded);
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("frontend extra-new added")), TimeSpan.FromSeconds(15), "the reload applied on every node");
        foreach (var node in nodes)
        {
            Assert.Contains("configuration (file change): pool api added", node.Output);
            Assert.Contains("configuration (file change): pool app changed: algorithm", node.Output);
            Assert.Contains("configuration (file change): frontend extra-old removed", node.Output);
        }
        await Eventually.Holds(async () =>
        {
            using var response = await _http.GetAsync("http://127.0.0.1:7091/");
            Assert.Contains(response.Headers.GetValues("X-Backend").Single(), new[] { "a", "c" });
        });
        await Eventually.Holds(async () =>
        {
            var refused = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => TcpClients.ConnectAsync(new IPEndPoint(IPAddress.Loopback, 7090)));
            Assert.Equal(System.Net.Sockets.SocketError.ConnectionRefused, refused.SocketErrorCode);
        });
        using (var pools = await _http.GetAsync("http://127.0.0.1:9111/api/pools"))
        {
            var text = await pools.Content.ReadAsStringAsync();
            Assert.Contains("\"least-connections\"", text);
            Assert.Contains("\"api\"", text);
        }
        await Task.Delay(1000);
        await AssertHeldConnectionsAnswerAsync();
        Assert.Equal(connectsBefore, Volatile.Read(ref connects));

        // 2. A configuration with three mistakes: refused whole on every node, three lines each; nothing changes.
        File.WriteAllText(reloadable, """
            balancer.pools.api {
              algorithm = fastest
              health-check.kind = none
              backends { a = "127.0.0.1:99999", c = "127.0.0.1:9003" }
            }
            balancer.frontends.extra-new { bind = "127.0.0.1:7091", reuse-port = on, pool = nowhere }
            """);
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("refused: 3 problem(s); the running configuration stays")), TimeSpan.FromSeconds(15), "the bad configuration refused on every node");
        foreach (var node in nodes)
        {
            var refusedLines = node.Output.Split('\n').Where(l => l.Contains("configuration (file change) refused: balancer.")).ToList();
            Assert.True(refusedLines.Count == 3, string.Join("\n", refusedLines));
        }
        using (var reload = await _http.PostAsync("http://127.0.0.1:9110/api/config/reload", new StringContent("{}", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, reload.StatusCode);
            var detail = System.Text.Json.JsonDocument.Parse(await reload.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString()!;
            Assert.Equal(4, detail.Split('\n').Length);
        }
        using (var response = await _http.GetAsync("http://127.0.0.1:7091/"))
        {
            Assert.Contains(response.Headers.GetValues("X-Backend").Single(), new[] { "a", "c" });
        }

        // 3. SIGHUP reads the files again: the mistakes mended, the node says what changed (nothing).
        File.WriteAllText(reloadable, Reloaded);
        await WaitUntilAsync(() => Count(nodes[0].Output, "configuration (file change): nothing changed") >= 1, TimeSpan.FromSeconds(15), "the mended file read");
        Balancer.Node.Posix.Signal(nodes[0].Pid, 1);
        await WaitUntilAsync(() => nodes[0].Output.Contains("configuration (SIGHUP): nothing changed"), TimeSpan.FromSeconds(15),
            "SIGHUP reloaded; node 1 said:\n" + string.Join("\n", nodes[0].Output.Split('\n').Where(l => l.Contains("configuration")).TakeLast(12)));

        await AssertHeldConnectionsAnswerAsync();
        await load.StopAsync();
        Assert.True(load.Failures.Count == 0, $"{load.Failures.Count} of {load.Served + load.Failures.Count} requests failed: {string.Join("; ", load.Failures.Take(5))}");
        Assert.Equal(connectsBefore, Volatile.Read(ref connects));
        held.ForEach(s => s.Dispose());
        Console.WriteLine($"reload under load: {load.Served} keep-alive requests, 0 failed, {connectsBefore} connections opened before the reloads and none after; 3 held TCP connections answered throughout");
    }

    [Fact]
    public async Task ClusterConfiguration_AppliedThroughNode1_RunsOnEveryNodeWithinTwoSeconds_ADriftingNodeIsShown_AndCatchesUp()
    {
        var nodes = await StartThreeNodesAsync([]);
        async Task<string> CtlAsync(params string[] args)
        {
            var ctl = Start(["ctl", "127.0.0.1:9110", .. args]);
            var code = await ctl.WaitForExitAsync(TimeSpan.FromSeconds(30));
            Assert.True(code == 0, $"ctl {string.Join(' ', args)} exited {code}: {ctl.Output}{ctl.Errors}");
            return ctl.Output;
        }
        // What each member runs travels by gossip: node 1 hears of every member's version within a round or two.
        async Task EveryMemberRunsAsync(long version) => await Eventually.Holds(async () =>
        {
            var members = System.Text.Json.JsonDocument.Parse(await _http.GetStringAsync("http://127.0.0.1:9110/api/config")).RootElement.GetProperty("nodes");
            Assert.All(members.EnumerateArray(), n => Assert.Equal(version, n.GetProperty("version").GetInt64()));
        });
        var version1 = Path.Combine(_dataDir, "cluster-v1.conf");
        File.WriteAllText(version1, """
            balancer.pools.app.algorithm = least-connections
            balancer.pools.api {
              health-check.kind = none
              backends { a = "127.0.0.1:9001", b = "127.0.0.1:9002" }
            }
            balancer.frontends.api { bind = "127.0.0.1:7095", reuse-port = on, pool = api }
            """);

        // 1. Published through node 1: every node runs it within 2 s.
        var published = Stopwatch.StartNew();
        Assert.Contains("cluster configuration version 1 published", await CtlAsync("config", "apply", version1));
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("configuration (cluster version 1): frontend api added")), TimeSpan.FromSeconds(10), "version 1 on every node");
        var everywhere = published.Elapsed;
        Assert.True(everywhere < TimeSpan.FromSeconds(2), $"version 1 ran on every node only {everywhere.TotalSeconds:0.00} s after it was published");
        using (var response = await _http.GetAsync("http://127.0.0.1:7095/"))
        {
            Assert.Contains(response.Headers.GetValues("X-Backend").Single(), new[] { "a", "b" });
        }
        await EveryMemberRunsAsync(1);
        var show = await CtlAsync("config", "show");
        Assert.Contains("cluster configuration: version 1, published through akka.tcp://balancer@127.0.0.1:4053", show);
        Assert.Equal(3, Regex.Matches(show, "version 1 +[0-9a-f]{12}").Count);
        Assert.Contains("no difference", await CtlAsync("config", "diff", version1));
        // A mistake in what is published is refused whole, through any node; nothing changes.
        var wrong = Path.Combine(_dataDir, "cluster-wrong.conf");
        File.WriteAllText(wrong, """
            balancer.pools.api.algorithm = fastest
            balancer.node.data-dir = "/elsewhere"
            """);
        var refused = Start("ctl", "127.0.0.1:9111", "config", "apply", wrong);
        Assert.Equal(1, await refused.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("balancer.node: stays with each node", refused.Errors);

        // 2. Node 3 starts again with an older file, still listing a backend the others retired:
        //    it takes version 1 from the cluster but runs other pools than node 1 and 2 (drift).
        nodes[2].Terminate();
        Assert.Equal(0, await nodes[2].WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var older = Path.Combine(_dataDir, "node3-older.conf");
        File.WriteAllText(older, """balancer.pools.app.backends.d = "127.0.0.1:9004" """);
        nodes[2] = StartNode(3, "--config", older);
        await nodes[2].WaitForOutputAsync(" ready", StartTimeout);
        await WaitUntilAsync(() => nodes[2].Output.Contains("configuration (cluster version 1): "), TimeSpan.FromSeconds(15), "node 3 applied version 1");
        try
        {
            await WaitUntilAsync(() => nodes[0].Output.Contains("configuration drift: akka.tcp://balancer@127.0.0.1:4055"), TimeSpan.FromSeconds(20), "node 1 reports node 3's drift");
        }
        catch (Xunit.Sdk.XunitException)
        {
            static string Lines(NodeProcess node) => string.Join("\n", node.Output.Split('\n').Where(l => l.Contains("configuration") || l.Contains("4055")).TakeLast(20));
            var config = await _http.GetStringAsync("http://127.0.0.1:9110/api/config");
            throw new Xunit.Sdk.XunitException($"node 1 did not report node 3's drift within 20 s; node 1's /api/config: {config}\nnode 1 said:\n{Lines(nodes[0])}\nnode 3 said:\n{Lines(nodes[2])}");
        }
        var cluster = await CtlAsync("cluster", "show");
        Assert.Matches(@"127\.0\.0\.1:4055 .* v1 [0-9a-f]{12} DRIFT", cluster);
        Assert.DoesNotMatch(@"127\.0\.0\.1:4053 .* DRIFT", cluster);

        // 3. The next version retires the backend for everyone: node 3 catches up, the drift is over.
        var version2 = Path.Combine(_dataDir, "cluster-v2.conf");
        File.WriteAllText(version2, File.ReadAllText(version1) + "\nbalancer.pools.app.backends.d = null\n");
        var diff = await CtlAsync("config", "diff", version2);
        Assert.Contains("+ balancer.pools.app.backends.d = null", diff);
        Assert.Contains("cluster configuration version 2 published", await CtlAsync("config", "apply", version2));
        await WaitUntilAsync(() => nodes[0].Output.Contains("configuration drift over: akka.tcp://balancer@127.0.0.1:4055"), TimeSpan.FromSeconds(15), "node 3 caught up");
        await EveryMemberRunsAsync(2);
        show = await CtlAsync("config", "show");
        Assert.Single(Regex.Matches(show, "version 2 +([0-9a-f]{12})").Select(m => m.Groups[1].Value).Distinct());
        Assert.Equal(3, Regex.Matches(show, "version 2 +[0-9a-f]{12}").Count);
        Assert.DoesNotContain("DRIFT", show);
        var history = await CtlAsync("config", "history");
        Assert.Matches(@"(?s)^version 2 .*version 1 .*pool api added", history);
        Console.WriteLine($"cluster configuration: version 1 ran on every node {everywhere.TotalMilliseconds:0} ms after it was published; node 3 with an older file reported drifting, and caught up with version 2");
    }

    [Fact]
    public async Task Etcd_BackendsRegisterAndLeaveUnderLoad_OnEveryNodeWithinASecond_AndAnEtcdOutageChangesNothing()
    {
        await using var etcd = await EtcdServer.StartAsync();
        var nodes = await StartThreeNodesAsync(["--set", $"balancer.config-source.etcd.endpoints=[\"{etcd.Url}\"]"]);
        using var registry = new Balancer.Configuration.EtcdConnection([new Uri(etcd.Url)]);
        static string LastBackends(NodeProcess node) =>
            node.Output.Split('\n').LastOrDefault(l => l.Contains("pool app: backends now", StringComparison.Ordinal)) ?? "";
        bool RoutableEverywhere(string name) => nodes.All(n => LastBackends(n).Contains($" {name}=127.0.0.1:", StringComparison.Ordinal));
        bool GoneEverywhere(string name) => nodes.All(n => !LastBackends(n).Contains($" {name}=127.0.0.1:", StringComparison.Ordinal));

        // Keep-alive requests to every node's own port all along.
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = Timeout.InfiniteTimeSpan }) { Timeout = TimeSpan.FromSeconds(5) };
        await using var load = KeepAliveLoad.Start(client, pause: TimeSpan.FromMilliseconds(10));
        var served = load.ByBackend;

        // 1. Five backends register themselves: each routable on all three nodes within a second.
        var registered = new Dictionary<string, NodeProcess>();
        var slowest = TimeSpan.Zero;
        foreach (var name in new[] { "r1", "r2", "r3", "r4", "r5" })
        {
            var backend = Start("backend", "--port", "0", "--name", name, "--register-etcd", etcd.Url, "--lease-ttl", "3");
            await backend.WaitForOutputAsync("registered in etcd", StartTimeout);
            var since = Stopwatch.StartNew();
            await WaitUntilAsync(() => RoutableEverywhere(name), TimeSpan.FromSeconds(10), $"{name} routable on every node");
            slowest = since.Elapsed > slowest ? since.Elapsed : slowest;
            registered[name] = backend;
        }
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"a registered backend became routable on every node only after {slowest.TotalMilliseconds:0} ms");
        await WaitUntilAsync(() => new[] { "r1", "r2", "r3", "r4", "r5" }.All(served.ContainsKey), TimeSpan.FromSeconds(20), "every registered backend served requests");

        // A key that cannot be used is refused by name; the rest stays. The cluster's configuration
        // published through ctl lives in etcd; a bad one there is refused and the last good one stays.
        await registry.PutAsync("/balancer/pools/nowhere/backends/z", "127.0.0.1:9001");
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("etcd key /balancer/pools/nowhere/backends/z: no pool \"nowhere\"")), TimeSpan.FromSeconds(10), "the key of an unknown pool refused by name");
        var clusterConfig = Path.Combine(_dataDir, "cluster-etcd.conf");
        File.WriteAllText(clusterConfig, "balancer.pools.app.algorithm = least-connections\n");
        var apply = Start("ctl", "127.0.0.1:9110", "config", "apply", clusterConfig);
        Assert.Equal(0, await apply.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        await WaitUntilAsync(() => nodes.All(n => Regex.IsMatch(n.Output, @"configuration \(etcd /balancer/config revision \d+\): pool app changed: algorithm")), TimeSpan.FromSeconds(10), "ctl config apply, through etcd, on every node");
        await registry.PutAsync("/balancer/config", "balancer.pools.app.algorithm = fastest");
        await WaitUntilAsync(() => nodes.All(n => Regex.IsMatch(n.Output, @"configuration \(etcd /balancer/config revision \d+\) refused: balancer\.pools\.app\.algorithm")), TimeSpan.FromSeconds(10), "a bad configuration in etcd refused");
        using (var pools = await _http.GetAsync("http://127.0.0.1:9112/api/pools"))
        {
            Assert.Contains("\"least-connections\"", await pools.Content.ReadAsStringAsync());
        }

        // 2. Out of rotation: its key deleted (within a second), a clean stop (lease revoked), a
        //    kill -9 (within the lease's 3 s + 1 s).
        await registry.DeleteAsync("/balancer/pools/app/backends/r1");
        var deleted = Stopwatch.StartNew();
        await WaitUntilAsync(() => GoneEverywhere("r1"), TimeSpan.FromSeconds(10), "r1 gone after its key was deleted");
        var afterDelete = deleted.Elapsed;
        registered["r2"].Terminate();
        var stopped = Stopwatch.StartNew();
        await WaitUntilAsync(() => GoneEverywhere("r2"), TimeSpan.FromSeconds(10), "r2 gone after it stopped");
        var afterStop = stopped.Elapsed;
        await registered["r3"].KillAsync();
        var killed = Stopwatch.StartNew();
        await WaitUntilAsync(() => GoneEverywhere("r3"), TimeSpan.FromSeconds(15), "r3 gone after kill -9");
        var afterKill = killed.Elapsed;
        Assert.True(afterDelete < TimeSpan.FromSeconds(1), $"r1 left only {afterDelete.TotalMilliseconds:0} ms after its key's deletion");
        Assert.True(afterStop < TimeSpan.FromSeconds(1), $"r2 left only {afterStop.TotalMilliseconds:0} ms after its clean stop");
        Assert.True(afterKill < TimeSpan.FromSeconds(3 + 1), $"r3 left only {afterKill.TotalMilliseconds:0} ms after kill -9 (lease 3 s)");

        // 3. etcd gone for 30 s: every node keeps r4 and r5 and serves; it says so on /readyz.
        await etcd.StopAsync();
        await Task.Delay(TimeSpan.FromSeconds(5));
        using (var ready = await _http.GetAsync("http://127.0.0.1:9111/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Contains("etcd unreachable since", await ready.Content.ReadAsStringAsync());
        }
        Assert.Contains("etcd unreachable since", await _http.GetStringAsync("http://127.0.0.1:9112/"));
        Assert.True(nodes.All(n => n.Output.Contains("unreachable: ") && n.Output.Contains("this node keeps the configuration and backends it had")));
        var servedBefore = served.GetValueOrDefault("r4") + served.GetValueOrDefault("r5");
        await Task.Delay(TimeSpan.FromSeconds(25));
        Assert.True(nodes.All(n => LastBackends(n).Contains(" r4=", StringComparison.Ordinal) && LastBackends(n).Contains(" r5=", StringComparison.Ordinal)));
        Assert.True(served.GetValueOrDefault("r4") + served.GetValueOrDefault("r5") > servedBefore, "r4 and r5 kept serving while etcd was away");

        // 4. Back: what changed right as it returned (r6 registered, r4's key deleted) reaches every node.
        await etcd.StartAgainAsync();
        await registry.PutAsync("/balancer/pools/app/backends/r6", "127.0.0.1:9001");
        await registry.DeleteAsync("/balancer/pools/app/backends/r4");
        await WaitUntilAsync(() => RoutableEverywhere("r6") && GoneEverywhere("r4"), TimeSpan.FromSeconds(15), "the changes made at etcd's return on every node");
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("reachable again")), TimeSpan.FromSeconds(10), "every node says etcd is back");
        using (var ready = await _http.GetAsync("http://127.0.0.1:9111/readyz"))
        {
            Assert.Equal("ready\n", await ready.Content.ReadAsStringAsync());
        }

        await load.StopAsync();
        Assert.True(load.Failures.Count == 0, $"{load.Failures.Count} of {load.Served + load.Failures.Count} requests failed: {string.Join("; ", load.Failures.Take(5))}");
        Console.WriteLine($"etcd registry: 5 backends routable on every node at most {slowest.TotalMilliseconds:0} ms after registering; out after key deletion {afterDelete.TotalMilliseconds:0} ms, clean stop {afterStop.TotalMilliseconds:0} ms, kill -9 {afterKill.TotalMilliseconds:0} ms (lease 3 s); etcd stopped 30 s; {load.Served} requests, 0 failed");
    }

    [Fact]
    public async Task Alerts_OnePostPerIncident_AndStillOneAfterKillOfTheNodeThatSendsThem()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var extra = new[] { "--set", $"balancer.alerts.webhooks=[\"{receiver.Url}\"]" };
        var nodes = await StartThreeNodesAsync(extra);
        const string Sends = "alerts: this node sends the cluster's alerts";
        await WaitUntilAsync(() => nodes.Count(n => n.Output.Contains(Sends)) == 1, TimeSpan.FromSeconds(30), "one node sends alerts");
        var sender = nodes.Single(n => n.Output.Contains(Sends));

        // Every node sees backend c go down; the webhook hears it once.
        int Posts(string kind) => receiver.Received.Count(e => e.GetProperty("kind").GetString() == kind && e.TryGetProperty("backend", out var b) && b.GetString() == "c");
        await SetHealthAsync(9003, false);
        await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-down", TimeSpan.FromSeconds(20));
        await WaitUntilAsync(() => nodes.All(n => n.Output.Contains("backend c is DOWN")), TimeSpan.FromSeconds(10), "c down on every node");
        await Task.Delay(2000);
        Assert.Equal(1, Posts("backend-down"));

        // kill -9 of the node that sends them: another takes over, and the next incident is still posted once.
        await sender.KillAsync();
        var survivors = nodes.Where(n => n != sender).ToList();
        await WaitUntilAsync(() => survivors.Count(n => n.Output.Contains(Sends)) == 1, TimeSpan.FromSeconds(20), "a survivor sends alerts");
        await SetHealthAsync(9003, true);
        await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-up", TimeSpan.FromSeconds(30));
        await WaitUntilAsync(() => survivors.All(n => n.Output.Contains("backend c is UP")), TimeSpan.FromSeconds(10), "c up on every survivor");
        await Task.Delay(2000);
        Assert.Equal(1, Posts("backend-up"));
        Assert.Equal(1, receiver.Received.Count(e => e.GetProperty("kind").GetString() == "node-unreachable"));
    }

    [Fact]
    public async Task ActivePassive_KillActive_StandbyServesWithinFiveSeconds()
    {
        var hookFile = Path.Combine(_dataDir, "hooks.log");
        var extra = new[]
        {
            "--set", "balancer.node.mode=active-passive",
            "--set", $"balancer.node.hooks.on-active=echo active $BALANCER_NODE >> {hookFile}",
        };
        var nodes = new NodeProcess[3];
        for (var i = 1; i <= 3; i++)
        {
            nodes[i - 1] = StartNode(i, extra);
            // Oldest first: node1 is the active node.
            await nodes[i - 1].WaitForOutputAsync(i == 1 ? "node duty: active" : "node duty: passive", StartTimeout);
        }
        // Every member Up before the first kill: a kill while the others are still joining leaves
        // them without a leader to make them Up, and the split-brain resolver downs them.
        foreach (var node in nodes)
        {
            await node.WaitForOutputAsync("(3 up)", StartTimeout);
        }
        Assert.Equal("node1", await WhoServesSharedPortAsync(nodes));

        var takeovers = new List<TimeSpan>();
        for (var run = 0; run < 2; run++)
        {
            var active = Array.FindIndex(nodes, n => !n.HasExited && LastRole(n.Output) == "active");
            Assert.True(active >= 0, "no active node");
            await nodes[active].KillAsync();
            var killed = Stopwatch.StartNew();
            while (true)
            {
                Assert.True(killed.Elapsed < TimeSpan.FromSeconds(15), $"run {run}: no standby took over within 15 s after killing node{active + 1}:\n" +
                    string.Join("\n", nodes.Select((n, i) => $"node{i + 1}: " + string.Join("\n  ", n.Output.Split('\n').Where(l => l.Contains("node role") || l.Contains("cluster:") || l.Contains("frontend") || l.Contains("ERROR"))))));
                try
                {
                    using var response = await _http.GetAsync("http://127.0.0.1:8080/");
                    if (response.IsSuccessStatusCode)
                    {
                        break;
                    }
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(50);
            }
            takeovers.Add(killed.Elapsed);
            // The killed node comes back as the youngest: a standby.
            nodes[active] = StartNode(active + 1, extra);
            await nodes[active].WaitForOutputAsync("node duty: passive", StartTimeout);
            // Fully up before the next kill: with a member still joining, a kill leaves 1 against 1
            // and keep-majority keeps the side with the lowest address, which may be the dead one.
            try
            {
                await nodes[active].WaitForOutputAsync("(3 up)", StartTimeout);
            }
            catch (TimeoutException e)
            {
                throw new TimeoutException(e.Message + "\n" + string.Join("\n", nodes.Select((n, i) => $"node{i + 1}:\n  " + string.Join("\n  ",
                    n.Output.Split('\n').Where(l => l.Contains("Cluster Node") || l.Contains("duty") || l.Contains("cluster:") || l.Contains("SBR") || l.Contains("rejoin") || l.Contains("removed") || l.Contains("own") || l.Contains("InitJoin"))))));
            }
            await Task.Delay(1000);
        }
        var median = takeovers.Order().ElementAt(takeovers.Count / 2);
        Console.WriteLine($"active-passive takeover after kill -9: {string.Join(", ", takeovers.Select(t => $"{t.TotalSeconds:0.00} s"))}; median {median.TotalSeconds:0.00} s");
        Assert.All(takeovers, t => Assert.True(t < TimeSpan.FromSeconds(5), $"takeover took {t}"));
        var hooks = File.ReadAllLines(hookFile);
        Assert.True(hooks.Length >= 3, $"on-active ran {hooks.Length} times: {string.Join(" | ", hooks)}");
    }

    /// <summary>
    /// Every affinity mode on one cluster, a pool and a frontend each: 200 sessions per mode made
    /// through node 1 (with write = majority, each acknowledged by a majority before its first
    /// response reaches the client) keep their backends through nodes 2 and 3, and after kill -9
    /// of node 1.
    /// </summary>
    [Fact]
    public async Task Affinity_SessionsMadeOnNode1_KeptByEveryNode_AndAfterKillOfNode1_InEveryMode()
    {
        string[] modes = ["header:X-Session", "learn-cookie:JSESSIONID", "source-ip", "cookie"];
        // Mode k's frontend on node N listens on 8100 + 10 k + N.
        static int Port(int mode, int node) => 8100 + 10 * (mode + 1) + node;
        var nodes = await StartThreeNodesAsync(node => modes.SelectMany((mode, k) => new[]
        {
            "--set", $"balancer.pools.sticky{k}.affinity.mode=\"{mode}\"",
            "--set", $"balancer.pools.sticky{k}.affinity.write=majority",
            "--set", $"balancer.pools.sticky{k}.health-check.kind=http",
            "--set", $"balancer.pools.sticky{k}.health-check.path=/healthz",
            "--set", $"balancer.pools.sticky{k}.backends.a=127.0.0.1:9001",
            "--set", $"balancer.pools.sticky{k}.backends.b=127.0.0.1:9002",
            "--set", $"balancer.pools.sticky{k}.backends.c=127.0.0.1:9003",
            "--set", $"balancer.frontends.sticky{k}.mode=http",
            "--set", $"balancer.frontends.sticky{k}.bind=[\"127.0.0.1:{Port(k, node)}\"]",
            "--set", $"balancer.frontends.sticky{k}.pool=sticky{k}",
        }).ToArray());

        var made = new List<(StickyClient Client, int Mode, List<(StickyClient.Session Session, string Backend)> Sessions)>();
        try
        {
            for (var k = 0; k < modes.Length; k++)
            {
                var client = new StickyClient(modes[k]);
                var sessions = new List<(StickyClient.Session Session, string Backend)>();
                made.Add((client, k, sessions));
                for (var i = 0; i < 200; i++)
                {
                    sessions.Add(await client.CreateAsync(Port(k, 1), i));
                }
                Assert.True(sessions.Select(s => s.Backend).Distinct().Count() == 3, $"{modes[k]}: sessions on {string.Join(", ", sessions.Select(s => s.Backend).Distinct())} only");
            }
            async Task<string> MovedAsync()
            {
                var moved = new List<string>();
                foreach (var (client, k, sessions) in made)
                {
                    foreach (var node in new[] { 2, 3 })
                    {
                        var count = 0;
                        foreach (var (session, backend) in sessions)
                        {
                            count += await client.BackendOfAsync(Port(k, node), session) == backend ? 0 : 1;
                        }
                        if (count > 0)
                        {
                            moved.Add($"{modes[k]}: {count} of {sessions.Count} moved on node {node}");
                        }
                    }
                }
                return string.Join("; ", moved);
            }
            Assert.Equal("", await MovedAsync());
            await nodes[0].KillAsync();
            Assert.Equal("", await MovedAsync());
        }
        finally
        {
            made.ForEach(m => m.Client.Dispose());
        }
    }

    [Fact]
    public async Task SessionFlood_TableStaysBoundedAndEqualOnEveryNode_NoOversizedGossip_AndEarlierSessionsKeepTheirBackends()
    {
        var extra = new[]
        {
            "--set", "balancer.pools.app.affinity.mode=\"header:X-Session\"",
            "--set", "balancer.pools.app.affinity.max-entries=20000",
        };
        var nodes = await StartThreeNodesAsync(extra);

        // 200 sessions made before the flood, each back for a second request (established), on every node.
        using var client = new StickyClient("header:X-Session");
        var sessions = new List<(StickyClient.Session Session, string Backend)>();
        for (var i = 0; i < 200; i++)
        {
            var made = await client.CreateAsync(8081, i);
            Assert.Equal(made.Backend, await client.BackendOfAsync(8081, made.Item1));
            sessions.Add(made);
        }
        await WaitUntilAsync(() => EntriesAsync(9111).Result >= 200 && EntriesAsync(9112).Result >= 200, TimeSpan.FromSeconds(20), "the 200 sessions on every node");
        var idle = nodes.Select(n => ResidentBytes(n.Pid)).ToArray();
        var peak = idle.ToArray();
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                for (var i = 0; i < nodes.Length; i++)
                {
                    peak[i] = Math.Max(peak[i], ResidentBytes(nodes[i].Pid));
                }
                await Task.Delay(250);
            }
        });

        // 20,000 distinct 512-character keys from one address, then 20 keys from each of 1,000 addresses:
        // twice max-entries.
        var flood = Stopwatch.StartNew();
        using (var one = ToolProcess.ClientFrom("127.0.0.1"))
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, 20_000), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, cancellationToken) =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{8081 + i % 3}/");
                request.Headers.Add("X-Session", $"flood-{i}-".PadRight(512, 'x'));
                using var response = await one.SendAsync(request, cancellationToken);
                response.EnsureSuccessStatusCode();
            });
        }
        await Parallel.ForEachAsync(Enumerable.Range(0, 1000), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (address, cancellationToken) =>
        {
            using var from = ToolProcess.ClientFrom($"127.0.{10 + address / 250}.{2 + address % 250}");
            for (var k = 0; k < 20; k++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{8081 + address % 3}/");
                request.Headers.Add("X-Session", $"client-{address}-{k}");
                using var response = await from.SendAsync(request, cancellationToken);
                response.EnsureSuccessStatusCode();
            }
        });
        var flooded = flood.Elapsed;
        // Replication settles: every node holds the same bounded table.
        await Task.Delay(5000);
        sampling.Cancel();
        await sampler;
        var entries = new[] { await EntriesAsync(9110), await EntriesAsync(9111), await EntriesAsync(9112) };
        Console.WriteLine($"session flood: 40,000 requests in {flooded.TotalSeconds:0.0} s; entries per node {string.Join(", ", entries)}; RSS idle {string.Join(", ", idle.Select(b => b >> 20))} MB, peak {string.Join(", ", peak.Select(b => b >> 20))} MB");

        Assert.All(entries, e => Assert.InRange(e, 20_000, 20 * 1127));
        for (var i = 0; i < nodes.Length; i++)
        {
            // The table itself is under a megabyte: the growth (60-85 MB on 2 cores) is what the
            // flood's 40,000 requests leave in the GC heap before it collects them.
            Assert.True(peak[i] - idle[i] < 150L << 20, $"node {i + 1} grew from {idle[i] >> 20} MB to {peak[i] >> 20} MB");
            Assert.DoesNotContain("oversized", nodes[i].Output + nodes[i].Errors, StringComparison.OrdinalIgnoreCase);
        }
        var moved = 0;
        foreach (var port in new[] { 8081, 8082, 8083 })
        {
            foreach (var (session, backend) in sessions)
            {
                moved += await client.BackendOfAsync(port, session) == backend ? 0 : 1;
            }
        }
        Assert.Equal(0, moved);
    }

    /// <summary>The node's resident set (VmRSS), in bytes.</summary>
    private static long ResidentBytes(int pid) =>
        File.ReadLines($"/proc/{pid}/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024).Single();

    /// <summary>The sessions of pool app a node holds, from its metrics.</summary>
    private async Task<double> EntriesAsync(int adminPort)
    {
        var metrics = await _http.GetStringAsync($"http://127.0.0.1:{adminPort}/metrics");
        return double.Parse(metrics.Split('\n').Single(l => l.StartsWith("balancer_affinity_entries{pool=\"app\"}", StringComparison.Ordinal)).Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A client that makes and replays sessions the way each affinity mode recognises them: a
    /// header, the backend's own session cookie, the balancer's cookie, or the client's address
    /// (127.0.0.N, a distinct loopback source address per session).
    /// </summary>
    private sealed class StickyClient(string mode) : IDisposable
    {
        private static readonly HttpRequestOptionsKey<IPAddress> SourceAddress = new("source-address");
        private readonly HttpClient _http = new(new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            PooledConnectionLifetime = TimeSpan.Zero,
            ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                try
                {
                    if (context.InitialRequestMessage.Options.TryGetValue(SourceAddress, out var source))
                    {
                        socket.Bind(new IPEndPoint(source, 0));
                    }
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        }) { Timeout = TimeSpan.FromSeconds(10) };

        public sealed record Session(int Index, string? Cookie);

        public async Task<(Session, string Backend)> CreateAsync(int port, int index)
        {
            var session = new Session(index, null);
            using var response = await SendAsync(port, session, mode.StartsWith("learn-cookie", StringComparison.Ordinal) ? "/login" : "/");
            var cookie = mode switch
            {
                "cookie" => SetCookie(response, "BALANCER"),
                "learn-cookie:JSESSIONID" => SetCookie(response, "JSESSIONID"),
                _ => null,
            };
            return (session with { Cookie = cookie }, response.Headers.GetValues("X-Backend").Single());
        }

        public async Task<string> BackendOfAsync(int port, Session session)
        {
            using var response = await SendAsync(port, session, "/");
            return response.Headers.GetValues("X-Backend").Single();
        }

        private async Task<HttpResponseMessage> SendAsync(int port, Session session, string path)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}{path}");
            request.Headers.ConnectionClose = true;
            switch (mode)
            {
                case "header:X-Session":
                    request.Headers.Add("X-Session", $"session-{session.Index}");
                    break;
                case "source-ip":
                    request.Options.Set(SourceAddress, new IPAddress([127, 0, (byte)(1 + session.Index / 250), (byte)(2 + session.Index % 250)]));
                    break;
                default:
                    if (session.Cookie is not null)
                    {
                        request.Headers.Add("Cookie", session.Cookie);
                    }
                    break;
            }
            var response = await _http.SendAsync(request);
            response.EnsureSuccessStatusCode();
            return response;
        }

        /// <summary>"NAME=value" from the response's Set-Cookie for NAME; the session must get one.</summary>
        private static string SetCookie(HttpResponseMessage response, string name) =>
            response.Headers.GetValues("Set-Cookie").Select(c => c.Split(';')[0]).Single(c => c.StartsWith(name + "=", StringComparison.Ordinal));

        public void Dispose() => _http.Dispose();
    }

    [Fact]
    public async Task Ctl_ShowsTheCluster_DrainSpreads_LeaveAndDownRemoveMembers()
    {
        // Only an operator downs a dead node here: the split-brain resolver waits a minute.
        var extra = new[] { "--set", "akka.cluster.split-brain-resolver.stable-after=60s" };
        var nodes = new NodeProcess[3];
        for (var i = 1; i <= 3; i++)
        {
            nodes[i - 1] = StartNode(i, extra);
        }
        foreach (var node in nodes)
        {
            await node.WaitForOutputAsync("admin API on", StartTimeout);
            await node.WaitForOutputAsync("(3 up)", StartTimeout);
        }

        var (code, shown) = await CtlAsync("127.0.0.1:9110", "cluster", "show");
        Assert.Equal(0, code);
        var members = shown.Split('\n').Where(l => l.StartsWith("akka.tcp://balancer@127.0.0.1:", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, members.Count(l => l.Contains(" up ") && l.Contains(" reachable ")));
        Assert.Contains("Count: 3 members, 3 up, 0 unreachable", shown);

        // A drain through node 2 shows on node 3 within 2 s.
        Assert.Equal(0, (await CtlAsync("127.0.0.1:9111", "backend", "drain", "app/b")).Code);
        var drained = Stopwatch.StartNew();
        while (true)
        {
            var (_, backends) = await CtlAsync("127.0.0.1:9112", "backends", "app");
            if (backends.Split('\n').Any(l => l.StartsWith("app/b ", StringComparison.Ordinal) && l.Contains(" drain ")))
            {
                break;
            }
            Assert.True(drained.Elapsed < TimeSpan.FromSeconds(2), "node 3 does not show app/b draining 2 s after the drain on node 2:\n" + backends);
        }
        var spread = drained.Elapsed;

        // cluster down on a killed node removes it.
        await nodes[1].KillAsync();
        await WaitUntilAsync(() => CtlAsync("127.0.0.1:9110", "cluster", "show").Result.Output.Contains("UNREACHABLE"), TimeSpan.FromSeconds(10), "node 2 unreachable");
        var (downCode, downOutput) = await CtlAsync("127.0.0.1:9110", "cluster", "down", "akka.tcp://balancer@127.0.0.1:4054");
        Assert.True(downCode == 0, downOutput);
        await WaitUntilAsync(() => !CtlAsync("127.0.0.1:9110", "cluster", "show").Result.Output.Contains("127.0.0.1:4054"), TimeSpan.FromSeconds(15), "node 2 removed");

        // cluster leave of node 3 removes it cleanly: the node stops on its own with exit code 0.
        var (leaveCode, leaveOutput) = await CtlAsync("127.0.0.1:9110", "cluster", "leave", "akka.tcp://balancer@127.0.0.1:4055");
        Assert.True(leaveCode == 0, leaveOutput);
        Assert.Equal(0, await nodes[2].WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("left the cluster", nodes[2].Output);
        await WaitUntilAsync(() => CtlAsync("127.0.0.1:9110", "cluster", "show").Result.Output.Contains("Count: 1 members, 1 up"), TimeSpan.FromSeconds(15), "one member left");
        Console.WriteLine($"ctl: drain through node 2 visible on node 3 after {spread.TotalMilliseconds:0} ms");
    }

    private async Task<(int Code, string Output)> CtlAsync(params string[] args)
    {
        var ctl = Start(["ctl", .. args]);
        var code = await ctl.WaitForExitAsync(TimeSpan.FromSeconds(20));
        return (code, ctl.Output);
    }

    public async Task DisposeAsync()
    {
        // Every process, even if one of them fails to go: nothing may outlive the test.
        await Task.WhenAll(_processes.Select(p => p.DisposeAsync().AsTask()));
        _http.Dispose();
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private NodeProcess Start(params string[] args)
    {
        var process = NodeProcess.Start(args);
        _processes.Add(process);
        return process;
    }

    /// <summary>Nodes 1-3 of hocon/ with <paramref name="extra"/> arguments, once each is ready and sees all three up.</summary>
    private Task<NodeProcess[]> StartThreeNodesAsync(string[] extra) => StartThreeNodesAsync(_ => extra);

    /// <summary>Nodes 1-3 of the demo configuration, node N with <paramref name="extra"/>(N) arguments; once each is ready and sees three up.</summary>
    private async Task<NodeProcess[]> StartThreeNodesAsync(Func<int, string[]> extra)
    {
        var nodes = new NodeProcess[3];
        for (var i = 1; i <= 3; i++)
        {
            nodes[i - 1] = StartNode(i, extra(i));
        }
        foreach (var node in nodes)
        {
            await node.WaitForOutputAsync(" ready", StartTimeout);
            await node.WaitForOutputAsync("(3 up)", StartTimeout);
        }
        return nodes;
    }

    private NodeProcess StartNode(int i, params string[] extra) => Start(
        ["run", "--config", Path.Combine(CommandLineTests.RepositoryRoot(), "hocon", $"node{i}.conf"),
         "--set", $"balancer.node.data-dir={Path.Combine(_dataDir, $"node{i}")}", .. extra]);

    private async Task SetHealthAsync(int port, bool ok)
    {
        using var response = await _http.PostAsync($"http://127.0.0.1:{port}/control/health?ok={(ok ? "true" : "false")}", null);
        response.EnsureSuccessStatusCode();
    }

    private async Task<string> BackendOfAsync(int port)
    {
        using var response = await _http.GetAsync($"http://127.0.0.1:{port}/");
        return response.Headers.GetValues("X-Backend").Single();
    }

    private async Task<string> WhoServesSharedPortAsync(NodeProcess[] nodes)
    {
        // The active node opens its listeners just after it announces its duty.
        await Eventually.Holds(async () =>
        {
            using var response = await _http.GetAsync("http://127.0.0.1:8080/");
            response.EnsureSuccessStatusCode();
        });
        return "node" + (Array.FindIndex(nodes, n => LastRole(n.Output) == "active") + 1);
    }

    private static string LastRole(string output)
    {
        var index = output.LastIndexOf("node duty: ", StringComparison.Ordinal);
        return index < 0 ? "" : output.Substring(index + "node duty: ".Length).Split(' ')[0];
    }

    /// <summary>The time stamp of the last log line containing <paramref name="what"/>, or MinValue.</summary>
    private static DateTime LastLogTime(string output, string what)
    {
        var line = output.Split('\n').LastOrDefault(l => l.Contains(what, StringComparison.Ordinal));
        var match = line is null ? null : System.Text.RegularExpressions.Regex.Match(line, @"\]\[(\d+/\d+/\d+ [\d:.]+)Z\]");
        return match is { Success: true } && DateTime.TryParse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out var time)
            ? time
            : DateTime.MinValue;
    }

    /// <summary>How many times <paramref name="what"/> occurs in <paramref name="text"/> (a log line printed once per occurrence).</summary>
    internal static int Count(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < timeout, $"timed out after {timeout} waiting for: {what}");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Keep-alive GETs to every node's own port (8081-8083) until stopped (2 minutes at most):
    /// requests served, by the backend that answered, and every failure.
    /// </summary>
    private sealed class KeepAliveLoad : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
        private readonly List<string> _failures = new();
        private List<Task> _loops = new();

        public System.Collections.Concurrent.ConcurrentDictionary<string, int> ByBackend { get; } = new();

        public int Served => ByBackend.Values.Sum();

        public IReadOnlyList<string> Failures
        {
            get
            {
                lock (_failures)
                {
                    return _failures.ToList();
                }
            }
        }

        public static KeepAliveLoad Start(HttpClient client, TimeSpan pause)
        {
            var load = new KeepAliveLoad();
            load._loops = Enumerable.Range(8081, 3).Select(port => Task.Run(() => load.RunAsync(client, port, pause))).ToList();
            return load;
        }

        private async Task RunAsync(HttpClient client, int port, TimeSpan pause)
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await client.GetAsync($"http://127.0.0.1:{port}/", _stop.Token);
                    await response.Content.ReadAsStringAsync(_stop.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        ByBackend.AddOrUpdate(response.Headers.GetValues("X-Backend").Single(), 1, (_, n) => n + 1);
                    }
                    else
                    {
                        Fail($":{port} HTTP {(int)response.StatusCode}");
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                }
                catch (Exception e)
                {
                    Fail($":{port} {e.GetBaseException().Message}");
                }
                await Task.Delay(pause);
            }
        }

        private void Fail(string what)
        {
            lock (_failures)
            {
                _failures.Add(what);
            }
        }

        public async Task StopAsync()
        {
            _stop.Cancel();
            await Task.WhenAll(_loops);
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync();
            _stop.Dispose();
        }
    }

    /// <summary>A bounded client loop opening a new connection for every request, recording each outcome.</summary>
    private sealed class NewConnectionLoad : IDisposable
    {
        private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
        private readonly Task _loop;
        private readonly List<(long Started, bool Ok, string Error)> _results = new();

        public NewConnectionLoad(Uri uri)
        {
            _loop = Task.Run(async () =>
            {
                using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(5) };
                while (!_stop.IsCancellationRequested)
                {
                    var started = Stopwatch.GetTimestamp();
                    try
                    {
                        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
                        request.Headers.ConnectionClose = true;
                        using var response = await client.SendAsync(request, _stop.Token);
                        Record(started, response.IsSuccessStatusCode, $"HTTP {(int)response.StatusCode}");
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                    }
                    catch (Exception e)
                    {
                        Record(started, false, e.GetBaseException().Message);
                    }
                    await Task.Delay(10);
                }
            });
        }

        public List<(long Started, bool Ok, string Error)> Results
        {
            get
            {
                lock (_results)
                {
                    return _results.ToList();
                }
            }
        }

        public void Stop()
        {
            _stop.Cancel();
            _loop.Wait(TimeSpan.FromSeconds(10));
        }

        public void Dispose()
        {
            Stop();
            _stop.Dispose();
        }

        private void Record(long started, bool ok, string error)
        {
            lock (_results)
            {
                _results.Add((started, ok, error));
            }
        }
    }
}
