using Akka.Configuration;
using Balancer.Node;

namespace Balancer.Tests.Node;

public class NodeConfigTests
{
    private static Config NodeConfigFor(int port, string durableDir) => ConfigurationFactory.ParseString($$"""
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = {{port}} }
        akka.cluster.seed-nodes = ["akka.tcp://balancer@127.0.0.1:4053", "akka.tcp://balancer@127.0.0.1:4054"]
        balancer.replication.durable.lmdb.dir = "{{durableDir.Replace("\\", "/")}}"
        """);

    [Fact]
    public void RestartedFirstSeed_WaitsLongerForTheRunningCluster_FirstStartAndOtherNodesDoNot()
    {
        var existing = Directory.CreateTempSubdirectory("balancer-ddata-").FullName;
        var missing = Path.Combine(Path.GetTempPath(), $"balancer-ddata-missing-{Guid.NewGuid():N}");
        try
        {
            // The first seed, restarted (its durable folder is there): 20 s before it forms a cluster alone.
            Assert.Equal(NodeConfig.RestartedFirstSeedTimeout,
                NodeConfig.WithRestartedFirstSeedTimeout(NodeConfigFor(4053, existing)).GetTimeSpan("akka.cluster.seed-node-timeout"));
            // Its first start, another seed, or a timeout the operator chose: unchanged.
            Assert.False(NodeConfig.WithRestartedFirstSeedTimeout(NodeConfigFor(4053, missing)).HasPath("akka.cluster.seed-node-timeout"));
            Assert.False(NodeConfig.WithRestartedFirstSeedTimeout(NodeConfigFor(4054, existing)).HasPath("akka.cluster.seed-node-timeout"));
            var chosen = ConfigurationFactory.ParseString("akka.cluster.seed-node-timeout = 7s").WithFallback(NodeConfigFor(4053, existing));
            Assert.Equal(TimeSpan.FromSeconds(7), NodeConfig.WithRestartedFirstSeedTimeout(chosen).GetTimeSpan("akka.cluster.seed-node-timeout"));
        }
        finally
        {
            Directory.Delete(existing, recursive: true);
        }
    }
}
