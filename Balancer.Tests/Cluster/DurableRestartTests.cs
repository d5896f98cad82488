using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Cluster;

/// <summary>
/// Runtime changes survive a full-cluster restart: three nodes with their own LightningDB stores
/// are all stopped and started again (new incarnations), and the added backend and the drain are
/// back, also on a node whose store was torn meanwhile (it is moved aside and refilled by the peers).
/// </summary>
[Collection(SerialCollection.Name)]
public class DurableRestartTests : IDisposable
{
    private readonly string _dataDir = Directory.CreateTempSubdirectory("balancer-durable-").FullName;

    [Fact]
    public async Task FullRestart_RuntimeChangesAreBack_AndCookieSessionsStillVerify()
    {
        var nodes = await StartClusterAsync();
        string cookie;
        try
        {
            // The cluster generated the cookie key (affinity-key is empty); a client holds a cookie signed with it.
            // (Nodes that start together may each generate one; they converge on one by last-writer-wins.)
            await Eventually.Holds(() => Assert.All(nodes, n => Assert.Equal("b", Cookie(n).Verify(Cookie(nodes[0]).Issue("b")))), TimeSpan.FromSeconds(20));
            cookie = Cookie(nodes[0]).Issue("b")!;
            Assert.IsType<Status.Success>(await Router(nodes[0]).Ask<Status>(new PoolRouter.AddBackend("d", "127.0.0.1:9999", 50), TimeSpan.FromSeconds(10)));
            Assert.IsType<Status.Success>(await Router(nodes[1]).Ask<Status>(new PoolRouter.SetAdminState("a", BackendAdminState.Drain), TimeSpan.FromSeconds(10)));
            await Eventually.Holds(() => Assert.All(nodes, n => AssertChanges(Snapshot(n))));
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.Terminate()));
        }

        // One node's store is torn while it is down: it starts anyway, moves the unreadable store
        // aside, and gets the changes back from its peers.
        var torn = Directory.GetDirectories(_dataDir).Order(StringComparer.Ordinal).Last();
        var file = Path.Combine(torn, "data.mdb");
        await File.WriteAllBytesAsync(file, Enumerable.Repeat((byte)0x5a, (int)new FileInfo(file).Length).ToArray());

        var restarted = await StartClusterAsync();
        try
        {
            await Eventually.Holds(() => Assert.All(restarted, n => AssertChanges(Snapshot(n))));
            var movedAside = Assert.Single(Directory.GetDirectories(_dataDir), d => d.StartsWith(torn + ".unreadable-", StringComparison.Ordinal));
            Assert.True(File.Exists(Path.Combine(movedAside, "data.mdb")));
            Assert.True(Directory.Exists(torn), "the node made a new store where the unreadable one was");
            // The generated key came back from disk: the session the cookie names survives the restart.
            await Eventually.Holds(() => Assert.All(restarted, n => Assert.Equal("b", Cookie(n).Verify(cookie))));
        }
        finally
        {
            await Task.WhenAll(restarted.Select(n => n.Terminate()));
        }
    }

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static void AssertChanges(PoolSnapshot snapshot)
    {
        var added = Assert.Single(snapshot.Backends, b => b.Name == "d");
        Assert.Equal("127.0.0.1:9999", added.Address.ToString());
        Assert.Equal(50, added.Weight);
        Assert.Equal(BackendAdminState.Drain, snapshot.Backends.Single(b => b.Name == "a").AdminState);
    }

    private Task<List<ActorSystem>> StartClusterAsync() => InProcessCluster.StartAsync("balancer-durable", ConfigurationFactory.ParseString($$"""
        balancer.node.start-frontends = off
        balancer.pools.app {
          health-check.kind = none
          affinity.mode = cookie
          backends { a = "127.0.0.1:9001", b = "127.0.0.1:9002" }
        }
        """), nodes: 3, perNode: i => ConfigurationFactory.ParseString($"balancer.replication.durable.lmdb.dir = \"{Path.Combine(_dataDir, $"node{i}").Replace("\\", "/")}\""));

    private static IActorRef Router(ActorSystem node) => BalancerExtension.Get(node).PoolRouter("app");

    private static Balancer.Affinity.AffinityCookie Cookie(ActorSystem node) => BalancerExtension.Get(node).Pools.Find("app")!.Affinity!.Cookie!;

    private static PoolSnapshot Snapshot(ActorSystem node) => BalancerExtension.Get(node).Pools.Find("app")!.Snapshot;
}
