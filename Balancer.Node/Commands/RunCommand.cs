using System.CommandLine;
using Akka.Event;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Cluster;

namespace Balancer.Node.Commands;

/// <summary><c>balancer run</c>: one node in the foreground until Ctrl+C or SIGTERM.</summary>
internal static class RunCommand
{
    /// <summary>Adds run's options and action to <paramref name="command"/> (`run`, and the root: `balancer` alone runs a node).</summary>
    public static Command Configure(Command command)
    {
        var files = new Option<string[]>("--config")
        {
            Description = "A HOCON file of the node's configuration; repeatable, later files win. None: the defaults.",
            HelpName = "FILE",
            DefaultValueFactory = _ => [],
        };
        var sets = CheckConfigCommand.SetOption();
        command.Options.Add(files);
        command.Options.Add(sets);
        command.SetAction((parse, _) => RunAsync(parse.GetValue(files)!, parse.GetValue(sets)!, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private static void WarnWhenClusterTrafficIsOpen(ActorSystem system, Akka.Configuration.Config config)
    {
        if (config.GetBoolean("akka.remote.dot-netty.tcp.enable-ssl") || config.GetString("balancer.node.cluster-tls.certificate", "").Length > 0)
        {
            return;
        }
        var host = config.GetString("akka.remote.dot-netty.tcp.hostname", "");
        var log = Akka.Event.Logging.GetLogger(system, "balancer.security");
        if (System.Net.IPAddress.TryParse(host, out var address) && System.Net.IPAddress.IsLoopback(address))
        {
            log.Info("cluster traffic is not encrypted or authenticated (loopback only: fine for a demo; set balancer.node.cluster-tls across hosts)");
        }
        else
        {
            log.Warning("cluster traffic on {0} is NOT encrypted or authenticated: any host reaching the remoting port can join; set balancer.node.cluster-tls", host);
        }
    }

    /// <summary>Every listener of the node (remoting, frontends, admin API) that cannot be bound, one line each.</summary>
    private static List<string> UnbindableListeners(Akka.Configuration.Config config)
    {
        var problems = new List<string>();
        // Akka.NET's remoting binds hostname:port (public-hostname is only what it tells peers).
        var host = config.GetString("akka.remote.dot-netty.tcp.hostname", "");
        var port = config.GetInt("akka.remote.dot-netty.tcp.port", 0);
        if (System.Net.IPAddress.TryParse(host, out var address) &&
            Frontends.ListenerCheck.Problem("akka.remote.dot-netty.tcp.port", new System.Net.IPEndPoint(address, port)) is { } remoting)
        {
            problems.Add(remoting);
        }
        problems.AddRange(Frontends.ListenerCheck.Problems(BalancerSettings.Create(config)));
        return problems;
    }

    private static async Task<int> RunAsync(IReadOnlyList<string> files, IReadOnlyList<string> sets, TextWriter output, TextWriter error)
    {
        var problems = CheckConfigCommand.Validate(files, sets);
        if (problems.Count > 0)
        {
            foreach (var problem in problems)
            {
                error.WriteLine(problem);
            }
            error.WriteLine($"balancer: refusing to start: {problems.Count} configuration problem(s)");
            return 1;
        }

        var config = NodeConfig.WithRestartedFirstSeedTimeout(NodeConfig.Load(files, sets));
        // A taken port is found before the node joins its cluster or opens anything.
        var unbindable = UnbindableListeners(config);
        if (unbindable.Count > 0)
        {
            foreach (var problem in unbindable)
            {
                error.WriteLine($"balancer: {problem}");
            }
            return 1;
        }
        // Not disposed: a late signal may still cancel it while the process exits.
        var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        ParentWatch.Start(stop);
        // Started again right after a crash: wait until the cluster has removed the previous run.
        var markerPath = RunMarker.PathFor(config);
        if (markerPath is not null && RunMarker.LastRunCrashedAt(markerPath) is { } crashedAt
            && crashedAt + RunMarker.RemovalWindow(config) - DateTime.UtcNow is { Ticks: > 0 } wait)
        {
            error.WriteLine($"balancer: the last run of this node ended {(DateTime.UtcNow - crashedAt).TotalSeconds:0.0} s ago without leaving its cluster; joining in {wait.TotalSeconds:0.0} s, once the cluster has removed it");
            await Task.Delay(wait, stop.Token).ContinueWith(_ => { });
            if (stop.IsCancellationRequested)
            {
                return 0;
            }
        }
        using var marker = markerPath is null ? null : RunMarker.Start(markerPath);
        // The data plane outlives each ActorSystem: when the cluster removes this node, its
        // listeners keep serving while the next incarnation rejoins and takes them over.
        var dataPlane = new DataPlane();
        using var stopping = stop.Token.Register(dataPlane.Stopping);
        // SIGHUP and changed files reload whichever incarnation is running.
        using var reload = new ConfigurationReload(files, sets, BalancerSettings.Create(config).Node.WatchConfig, error);
        try
        {
            var systemConfig = config;
            for (var incarnation = 1; !stop.IsCancellationRequested; incarnation++)
            {
                ActorSystem system;
                try
                {
                    system = ActorSystem.Create("balancer", Security.ClusterTls.Setup(systemConfig).And(new DataPlaneSetup(dataPlane)));
                }
                catch (Exception e) when (incarnation > 1)
                {
                    // The remoting port of the last incarnation may take a moment to be free again.
                    error.WriteLine($"balancer: could not start incarnation {incarnation}: {e.GetBaseException().Message}; trying again in 2 s");
                    incarnation--;
                    await Task.Delay(TimeSpan.FromSeconds(2), stop.Token).ContinueWith(_ => { });
                    continue;
                }
                if (await RunIncarnationAsync(system, systemConfig, incarnation, stop, output, error, reload) is { } exitCode)
                {
                    return exitCode;
                }
                systemConfig = NodeConfig.ForRejoin(config, dataPlane.KnownPeers, dataPlane.SelfAddress);
                error.WriteLine($"balancer: the cluster removed this node; its frontends keep serving ({string.Join(", ", dataPlane.ServingUnowned.Order())}) while incarnation {incarnation + 1} rejoins through {string.Join(", ", systemConfig.GetStringList("akka.cluster.seed-nodes"))}");
            }
            output.WriteLine("balancer: stopping");
            return 0;
        }
        finally
        {
            // Listeners kept serving that no incarnation took over (a stop between two of them).
            await dataPlane.DrainUnownedAsync(BalancerSettings.Create(config).Node.DrainTimeout);
        }
    }

    /// <summary>Runs one incarnation of the node; the exit code once the node is to stop, or null when a new incarnation is to rejoin.</summary>
    private static async Task<int?> RunIncarnationAsync(ActorSystem system, Akka.Configuration.Config config, int incarnation, CancellationTokenSource stop, TextWriter output, TextWriter error, ConfigurationReload reload)
    {
        try
        {
            var cluster = Cluster.Get(system);
            if (config.GetStringList("akka.cluster.seed-nodes").Count == 0)
            {
                cluster.Join(cluster.SelfAddress);
            }
            var balancer = BalancerExtension.Get(system);
            reload.Serve(balancer);
            if (incarnation == 1)
            {
                WarnWhenClusterTrafficIsOpen(system, config);
                try
                {
                    await balancer.FrontendsStarted.WaitAsync(balancer.Settings.Node.FrontendStartTimeout, stop.Token);
                    if (await balancer.AdminStarted.WaitAsync(balancer.Settings.Node.FrontendStartTimeout, stop.Token) is { EndPoint: { } admin })
                    {
                        output.WriteLine($"admin API on http://{admin} (balancer ctl {admin} cluster show)");
                    }
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException)
                {
                    error.WriteLine($"balancer: {e.Message}");
                    await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
                    return 1;
                }

                if (balancer.Settings.Node.Mode == Configuration.NodeMode.ActivePassive)
                {
                    output.WriteLine("balancer: active-passive: frontends open when this node is the active one");
                }
                foreach (var (name, endpoints) in balancer.FrontendEndPoints.OrderBy(f => f.Key))
                {
                    var frontend = balancer.Settings.Frontends.First(f => f.Name == name);
                    output.WriteLine($"frontend {name} ({frontend.Mode.ToString().ToLowerInvariant()}) on {string.Join(", ", endpoints)} -> pool {frontend.Pool}");
                }
                output.WriteLine($"balancer node {cluster.SelfAddress} ready");
            }
            else
            {
                output.WriteLine($"balancer node {cluster.SelfAddress} rejoining (incarnation {incarnation})");
            }
            await Task.WhenAny(Task.Delay(Timeout.Infinite, stop.Token), system.WhenTerminated).ContinueWith(_ => { });
            var reason = CoordinatedShutdown.Get(system).ShutdownReason;
            if (reason is CoordinatedShutdown.ClusterLeavingReason)
            {
                // An operator asked this node to leave (ctl cluster leave): a clean, intended stop.
                output.WriteLine("balancer: this node left the cluster; stopping");
                return 0;
            }
            if (stop.IsCancellationRequested || reason is CoordinatedShutdown.ClrExitReason)
            {
                output.WriteLine("balancer: stopping");
                return 0;
            }
            if (reason is CoordinatedShutdown.ClusterDowningReason or CoordinatedShutdown.ClusterJoinUnsuccessfulReason)
            {
                // Downed (by the split-brain resolver or an operator) or never let in: rejoin.
                await system.WhenTerminated;
                return null;
            }
            error.WriteLine($"balancer: the node stopped on its own ({reason?.GetType().Name ?? "actor system terminated"}); exiting");
            return 1;
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
        finally
        {
            await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
            await system.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(15)).ContinueWith(_ => { });
        }
    }
}
