using Balancer.Node;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Management;

/// <summary>The diagnostic verbs an Akka.NET operator reaches for, through <c>balancer ctl</c> against a real node.</summary>
[Collection(SerialCollection.Name)]
public class DiagnosticsTests
{
    private const string Token = "s3cret-admin-token";

    [Fact]
    public async Task ClusterSbrShardingActorsAndLog_ShowTheNode_AndLogLevelChangesItWithTheToken()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              node.admin { enabled = on, bind = "127.0.0.1:0", token = "{{Token}}" }
              pools.app {
                health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms }
                {{backends.Hocon()}}
              }
            }
            """);
        var admin = (await host.AdminUriAsync()).Authority;

        var sbr = await CtlAsync(0, admin, "cluster", "sbr");
        Assert.Contains("strategy:                keep-majority", sbr);
        Assert.Contains("decisions on this node:", sbr);

        // Both probes run in the one member's region.
        await Eventually.Holds(async () =>
        {
            var sharding = await CtlAsync(0, admin, "cluster", "sharding");
            var row = sharding.Split('\n').Single(l => l.StartsWith("akka.tcp://", StringComparison.Ordinal));
            Assert.Equal(2, int.Parse(row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2]));
        }, TimeSpan.FromSeconds(20));

        // The actor tree, indented by depth: the pool's router under /system/balancer/pools.
        var tree = (await CtlAsync(0, admin, "actor", "hierarchy")).Split('\n');
        var pools = Array.IndexOf(tree, "  balancer");
        Assert.True(pools >= 0, string.Join('\n', tree));
        Assert.Contains("    pools", tree);
        Assert.Contains("      app", tree);
        Assert.Contains("    health", tree);
        Assert.Contains("system", tree);

        Assert.EndsWith("(401)\n", await CtlAsync(1, admin, "log", "level", "debug"));
        Assert.Equal("log level debug\n", await CtlAsync(0, admin, "--token", Token, "log", "level", "debug"));
        Assert.Equal("debug\n", await CtlAsync(0, admin, "--token", Token, "log", "level"));
        Assert.Contains("log level set to debug through the admin API", await CtlAsync(0, admin, "--token", Token, "log", "peek", "20"));
        // The log names client addresses (session keys in source-ip mode): reading it needs the token too.
        Assert.EndsWith("(401)\n", await CtlAsync(1, admin, "log", "peek"));
        Assert.Contains("Argument 'loud' not recognized. Must be one of:", await CtlAsync(2, admin, "--token", Token, "log", "level", "loud"));
        Assert.Equal("warning\n", (await CtlAsync(0, admin, "--token", Token, "log", "level", "warning")).Replace("log level ", ""));
    }

    /// <summary>Runs `balancer ctl` and returns what it printed (its output, or its error when it fails); the exit code must be <paramref name="expectedCode"/>.</summary>
    private static async Task<string> CtlAsync(int expectedCode, string admin, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await BalancerCli.MainAsync(["ctl", admin, .. args], output, error);
        Assert.True(code == expectedCode, $"ctl {string.Join(' ', args)} exited {code}: {output}{error}");
        return (code == 0 ? output : error).ToString().Replace("\r", "");
    }
}
