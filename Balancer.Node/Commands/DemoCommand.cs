using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Balancer.Node.Demo;

namespace Balancer.Node.Commands;

/// <summary>
/// <c>balancer demo</c>: demo backends and N nodes, each a separate OS process, in the foreground;
/// nodes 1-3 run hocon/nodeN.conf, further nodes a generated file with the same layout. Ctrl+C or
/// SIGTERM stops every child (nodes leave the cluster first); children also stop by themselves if
/// the launcher is killed. <c>--chaos</c> kills and restarts nodes under a load of sticky sessions.
/// </summary>
internal static class DemoCommand
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long a child may take to stop after SIGTERM: a node leaves the cluster first.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(20);

    public static Command Create()
    {
        var nodes = CliOptions.WholeNumber("--nodes", "How many nodes (1-9).", 1, 9, 3);
        var backends = CliOptions.WholeNumber("--backends", "How many demo backends (1-9), on 127.0.0.1:9001 and up.", 1, 9, 3);
        var mode = new Option<string>("--mode") { Description = "How the nodes share the frontends.", DefaultValueFactory = _ => "active-active" };
        mode.AcceptOnlyFromAmong("active-active", "active-passive");
        var chaos = new Option<TimeSpan?>("--chaos") { Description = "Kill a node every INTERVAL (20s, 500ms, 1m) under a load of sticky sessions.", HelpName = "INTERVAL" };
        chaos.CustomParser = result =>
        {
            try
            {
                return ParseInterval(result.Tokens.Count == 1 ? result.Tokens[0].Value : "");
            }
            catch (UsageException e)
            {
                result.AddError(e.Message);
                return null;
            }
        };
        var kills = CliOptions.WholeNumber("--kills", "With --chaos: stop after N kills (0: until Ctrl+C).", 0, 1_000_000, 0);
        var hocon = new Option<string?>("--hocon") { Description = "The directory of node1.conf..node3.conf (default: the repository's hocon/).", HelpName = "DIR" };
        var logs = new Option<bool>("--logs") { Description = "Interleave the children's logs on the console." };
        var keepState = new Option<bool>("--keep-state") { Description = "Keep the last run's durable state (drains, weights, sessions)." };
        var etcd = new Option<bool>("--etcd") { Description = "Start an etcd on 127.0.0.1:2379 as the cluster's configuration store and service registry: the backends register there and the nodes read it." };
        var command = new Command("demo", "Run demo backends and a cluster of nodes, each its own process, in the foreground.")
        {
            nodes, backends, mode, chaos, kills, hocon, logs, keepState, etcd,
        };
        command.SetAction((parse, _) => RunAsync(
            parse.GetValue(nodes), parse.GetValue(backends), parse.GetValue(mode)!, parse.GetValue(chaos), parse.GetValue(kills),
            parse.GetValue(hocon), parse.GetValue(logs), parse.GetValue(keepState), parse.GetValue(etcd), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private static async Task<int> RunAsync(int nodes, int backendCount, string mode, TimeSpan? chaos, int kills, string? hoconGiven, bool interleaveLogs, bool keepState, bool withEtcd, TextWriter output, TextWriter error)
    {
        // Checked here, once every option parsed: a command validator runs before the options'
        // own parsers and cannot read a value that failed to parse.
        if (chaos is not null && nodes < 3)
        {
            throw new UsageException("--chaos needs --nodes 3 or more: killing one of fewer nodes leaves no majority");
        }
        if (kills > 0 && chaos is null)
        {
            throw new UsageException("--kills goes with --chaos INTERVAL");
        }
        var hocon = hoconGiven ?? FindHoconDirectory()
            ?? throw new UsageException("cannot find the hocon/ directory (run from the repository or pass --hocon DIR)");
        for (var i = 1; i <= Math.Min(nodes, 3); i++)
        {
            if (!File.Exists(Path.Combine(hocon, $"node{i}.conf")))
            {
                throw new UsageException($"{Path.Combine(hocon, $"node{i}.conf")} does not exist");
            }
        }

        // Everything a demo run keeps (the nodes' durable state, the logs) lives in one folder beside
        // hocon/, so that one run's drains and weights never reach the next unless asked.
        var state = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(hocon))!, "data", "demo");
        if (!keepState && Directory.Exists(state))
        {
            Directory.Delete(state, recursive: true);
        }
        var logs = Directory.CreateDirectory(Path.Combine(state, "logs")).FullName;

        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        var generated = nodes > 3 ? Directory.CreateTempSubdirectory("balancer-demo-").FullName : null;
        var backends = Enumerable.Range(0, backendCount).Select(i => ($"{(char)('a' + i)}", 9001 + i)).ToList();
        var children = new List<ChildProcess>();
        var backendProcesses = new List<ChildProcess>();
        var nodeProcesses = new ChildProcess[nodes];
        Action<string>? Echo(string name) => interleaveLogs ? line => output.WriteLine($"[{name}] {line}") : null;
        var stoppedCleanly = false;
        EtcdProcess? etcd = null;
        try
        {
            if (withEtcd)
            {
                etcd = await EtcdProcess.StartAsync(Path.Combine(state, "etcd"), Path.Combine(logs, "etcd.log"), stop.Token);
            }
            // With etcd the backends are in no file: each registers itself, as a service would.
            string[] register = withEtcd ? ["--register-etcd", EtcdProcess.Url] : [];
            foreach (var (name, port) in backends)
            {
                backendProcesses.Add(ChildProcess.Start($"backend {name}", ["backend", "--port", port.ToString(), "--name", name, .. register], "listening on",
                    Echo($"backend-{name}"), Path.Combine(logs, $"backend-{name}.log")));
                children.Add(backendProcesses[^1]);
            }
            var settings = NodeSettingsFor(backends, mode, chaos is not null, withEtcd);
            for (var i = 1; i <= nodes; i++)
            {
                var config = i <= 3 ? Path.Combine(hocon, $"node{i}.conf") : WriteNodeConfig(generated!, hocon, i);
                nodeProcesses[i - 1] = ChildProcess.Start($"node{i}",
                    ["run", "--config", config, .. settings, "--set", $"balancer.node.data-dir={Path.Combine(state, $"node{i}")}"], " ready",
                    Echo($"node{i}"), Path.Combine(logs, $"node{i}.log"));
                children.Add(nodeProcesses[i - 1]);
            }
            foreach (var child in children)
            {
                if (!await child.WaitReadyAsync(ReadyTimeout, stop.Token))
                {
                    if (stop.IsCancellationRequested)
                    {
                        stoppedCleanly = true;
                        return 0;
                    }
                    error.WriteLine($"balancer demo: {child.Name} did not start:");
                    error.WriteLine(child.LastLines());
                    return 1;
                }
            }
            await WaitForMembersAsync(nodes, stop.Token);

            var balancer = BalancerCommand();
            output.WriteLine($"""

                Balancer demo: {nodes} node(s) ({mode}), backends {string.Join(" ", backends.Select(b => b.Item1))} on 127.0.0.1:9001-{9000 + backendCount} (Ctrl+C stops everything)

                {string.Join(Environment.NewLine, nodeProcesses.Select(n => $"  {n.Name,-9} pid {n.Pid,-8} log {Shown(n.LogPath!)}"))}
                {string.Join(Environment.NewLine, backendProcesses.Select(b => $"  {b.Name,-9} pid {b.Pid,-8} log {Shown(b.LogPath!)}"))}
                  state: {Shown(state)} ({(keepState ? "kept after the demo (--keep-state)" : "removed when the demo stops; --keep-state keeps it")})

                  shared HTTP port (every node, SO_REUSEPORT):  curl http://127.0.0.1:8080/
                  one node's HTTP port:                         {string.Join("  ", Enumerable.Range(1, nodes).Select(i => $"http://127.0.0.1:{8080 + i}/"))}
                  shared TCP port:                              curl http://127.0.0.1:7070/
                  one node's TCP port:                          {string.Join("  ", Enumerable.Range(1, nodes).Select(i => $"127.0.0.1:{7070 + i}"))}
                  status page:                                  {string.Join("  ", Enumerable.Range(1, nodes).Select(i => $"http://127.0.0.1:{9109 + i}/"))}
                  the cluster:                                  {balancer} ctl 127.0.0.1:9110 cluster show
                  backends:                                     {balancer} ctl 127.0.0.1:9110 backends
                  drain backend b:                              {balancer} ctl 127.0.0.1:9110 backend drain app/b
                  live events (Ctrl+C ends it):                 {balancer} ctl 127.0.0.1:9110 cluster tail
                  metrics:                                      curl http://127.0.0.1:9110/metrics
                  fail backend b's health check:                curl -X POST 'http://127.0.0.1:9002/control/health?ok=false'
                  make backend c slow:                          curl -X POST 'http://127.0.0.1:9003/control/slow?ms=200'
                  kill a node like a crash would:               kill -9 {nodeProcesses[^1].Pid}   (node{nodes}; the demo starts it again{(chaos is null ? "" : ", as --chaos does")})
                {(etcd is null ? "" : $"""
                  the registry in etcd:                         etcdctl --endpoints {EtcdProcess.Url} get --prefix /balancer/pools   (etcd pid {etcd.Pid})
                  register one more backend:                    {balancer} backend --port 9010 --name x --register-etcd {EtcdProcess.Url}
                  change the cluster's configuration:           etcdctl --endpoints {EtcdProcess.Url} put /balancer/config 'balancer.pools.app.algorithm = least-connections'
                """)}
                """);
            var restarter = new NodeRestarter(nodeProcesses, output, chaos is null ? "balancer demo: " : "chaos: ");
            Task? chaosRun = null;
            if (chaos is { } interval)
            {
                chaosRun = new ChaosMonkey(restarter, interval, kills, output).RunAsync(stop.Token);
            }
            while (!stop.IsCancellationRequested)
            {
                // A process that exits is shown and started again, not a reason to stop the demo.
                // Under chaos, the chaos monkey restarts the nodes it kills (and any other that died).
                for (var i = 0; i < backendProcesses.Count && !stop.IsCancellationRequested; i++)
                {
                    if (backendProcesses[i].HasExited)
                    {
                        output.WriteLine($"balancer demo: {backendProcesses[i].Name} exited ({NodeRestarter.DescribeExit(backendProcesses[i].ExitCode)}); starting it again");
                        backendProcesses[i] = backendProcesses[i].Restart();
                        if (await backendProcesses[i].WaitReadyAsync(ReadyTimeout, stop.Token))
                        {
                            output.WriteLine($"balancer demo: {backendProcesses[i].Name} restarted (pid {backendProcesses[i].Pid})");
                        }
                    }
                }
                for (var i = 0; i < nodeProcesses.Length && chaos is null && !stop.IsCancellationRequested; i++)
                {
                    if (nodeProcesses[i].HasExited)
                    {
                        output.WriteLine($"balancer demo: {nodeProcesses[i].Name} exited ({NodeRestarter.DescribeExit(nodeProcesses[i].ExitCode)}); starting it again");
                        await restarter.RestartAsync(i, stop.Token).ContinueWith(_ => { });
                    }
                }
                await Task.Delay(250, stop.Token).ContinueWith(_ => { });
            }
            if (chaosRun is not null)
            {
                await chaosRun;
            }
            output.WriteLine("balancer demo: stopping");
            stoppedCleanly = true;
            return 0;
        }
        finally
        {
            // Nodes first, so that they leave while the backends still answer; each group stops
            // together, so the whole stop takes at most two grace periods however many children hang.
            var stopping = Stopwatch.StartNew();
            await StopAllAsync(nodeProcesses.Where(n => n is not null), error);
            await StopAllAsync(backendProcesses, error);
            if (etcd is not null)
            {
                await etcd.DisposeAsync();
            }
            output.WriteLine($"balancer demo: every process stopped ({stopping.Elapsed.TotalSeconds:0.0} s)");
            if (generated is not null)
            {
                Directory.Delete(generated, recursive: true);
            }
            if (stoppedCleanly && !keepState)
            {
                Directory.Delete(state, recursive: true);
                // data/ itself goes too when the demo was all it held.
                var data = Path.GetDirectoryName(state)!;
                if (!Directory.EnumerateFileSystemEntries(data).Any())
                {
                    Directory.Delete(data);
                }
            }
            else
            {
                output.WriteLine($"balancer demo: logs and state kept in {Shown(state)}");
            }
        }
    }

    /// <summary>How to run this same executable from the current directory, as the hints print it.</summary>
    private static string BalancerCommand()
    {
        var process = Environment.ProcessPath!;
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? $"dotnet {Shown(ChildProcess.EntryAssemblyPath)}"
            : Shown(process);
    }

    /// <summary><paramref name="path"/> relative to the current directory when it is below it, otherwise in full.</summary>
    private static string Shown(string path)
    {
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, path);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? path
            : relative.Contains(Path.DirectorySeparatorChar) ? relative : "./" + relative;
    }

    /// <summary>SIGTERM to every child, then up to <see cref="StopGrace"/> for all of them; a child still running then is killed and named with its last lines.</summary>
    private static async Task StopAllAsync(IEnumerable<ChildProcess> children, TextWriter error)
    {
        var list = children.ToList();
        foreach (var child in list)
        {
            child.Terminate();
        }
        var stopped = await Task.WhenAll(list.Select(c => c.StopAsync(StopGrace)));
        for (var i = 0; i < list.Count; i++)
        {
            if (!stopped[i])
            {
                error.WriteLine($"balancer demo: {list[i].Name} did not stop within {StopGrace.TotalSeconds:0} s of SIGTERM; killed it. Its last lines:");
                error.WriteLine(list[i].LastLines());
            }
        }
    }

    /// <summary>"20s", "500ms", "1m" or plain seconds.</summary>
    internal static TimeSpan ParseInterval(string text)
    {
        var value = text.Trim();
        double amount;
        TimeSpan result;
        if (value.EndsWith("ms", StringComparison.Ordinal) && double.TryParse(value[..^2], System.Globalization.CultureInfo.InvariantCulture, out amount))
        {
            result = TimeSpan.FromMilliseconds(amount);
        }
        else if (value.EndsWith('s') && double.TryParse(value[..^1], System.Globalization.CultureInfo.InvariantCulture, out amount))
        {
            result = TimeSpan.FromSeconds(amount);
        }
        else if (value.EndsWith('m') && double.TryParse(value[..^1], System.Globalization.CultureInfo.InvariantCulture, out amount))
        {
            result = TimeSpan.FromMinutes(amount);
        }
        else if (double.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out amount))
        {
            result = TimeSpan.FromSeconds(amount);
        }
        else
        {
            throw new UsageException($"--chaos expects an interval such as 20s or 1m, got \"{text}\"");
        }
        if (result < TimeSpan.FromSeconds(5))
        {
            throw new UsageException($"--chaos interval must be at least 5s (a node needs time to rejoin), got \"{text}\"");
        }
        return result;
    }

    /// <summary>--set arguments every node gets: the demo's backends, the mode, and sticky sessions under chaos.</summary>
    private static string[] NodeSettingsFor(IReadOnlyList<(string Name, int Port)> backends, string mode, bool chaos, bool etcd)
    {
        var sets = new List<string> { "--set", $"balancer.node.mode={mode}" };
        if (etcd)
        {
            sets.AddRange(["--set", $"balancer.config-source.etcd.endpoints=[\"{EtcdProcess.Url}\"]"]);
        }
        foreach (var (name, port) in etcd ? [] : backends.Skip(3))
        {
            sets.AddRange(["--set", $"balancer.pools.app.backends.{name}=\"127.0.0.1:{port}\""]);
        }
        // hocon/balancer.conf defines a, b and c; fewer backends (or the registry) remove the rest.
        foreach (var name in new[] { "a", "b", "c" }.Skip(etcd ? 0 : backends.Count))
        {
            sets.AddRange(["--set", $"balancer.pools.app.backends.{name}=null"]);
        }
        if (chaos)
        {
            // The chaos load checks that sessions stay on their backend through node deaths.
            sets.AddRange(["--set", "balancer.pools.app.affinity.mode=\"header:X-Session\"", "--set", "balancer.pools.app.affinity.write=majority"]);
        }
        return sets.ToArray();
    }

    /// <summary>Node i beyond 3: the layout of hocon/nodeN.conf with its own ports (4052+i, 808i, 707i, 9109+i).</summary>
    private static string WriteNodeConfig(string directory, string hocon, int i)
    {
        var path = Path.Combine(directory, $"node{i}.conf");
        File.WriteAllText(path, $$"""
            # Generated by `balancer demo` for node {{i}}; nodes 1-3 are the seeds.
            include "{{Path.GetFullPath(Path.Combine(hocon, "balancer.conf")).Replace("\\", "/")}}"
            akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = {{4052 + i}} }
            akka.cluster.seed-nodes = ["akka.tcp://balancer@127.0.0.1:4053", "akka.tcp://balancer@127.0.0.1:4054", "akka.tcp://balancer@127.0.0.1:4055"]
            balancer {
              node.admin.bind = "127.0.0.1:{{9109 + i}}"
              frontends {
                web { mode = http, bind = ["127.0.0.1:8080"], reuse-port = on, pool = app }
                web-node{{i}} { mode = http, bind = ["127.0.0.1:{{8080 + i}}"], pool = app }
                raw { mode = tcp, bind = ["127.0.0.1:7070"], reuse-port = on, pool = app }
                raw-node{{i}} { mode = tcp, bind = ["127.0.0.1:{{7070 + i}}"], pool = app }
              }
            }
            """);
        return path;
    }

    /// <summary>Waits until node 1's admin API shows every node up (or gives up after a minute; the nodes already said they are ready).</summary>
    private static async Task WaitForMembersAsync(int nodes, CancellationToken stop)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + ReadyTimeout;
        while (DateTime.UtcNow < deadline && !stop.IsCancellationRequested)
        {
            try
            {
                var cluster = await http.GetStringAsync("http://127.0.0.1:9110/api/cluster", stop);
                if (System.Text.RegularExpressions.Regex.Matches(cluster, "\"status\":\"up\"").Count >= nodes)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            await Task.Delay(250, stop).ContinueWith(_ => { });
        }
    }

    internal static string? FindHoconDirectory()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                var candidate = Path.Combine(directory.FullName, "hocon");
                if (File.Exists(Path.Combine(candidate, "node1.conf")))
                {
                    return candidate;
                }
            }
        }
        return null;
    }
}
