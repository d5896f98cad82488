using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;

namespace Balancer.Tests.TestSupport;

/// <summary>Bounded polling for state that converges (replication, membership).</summary>
internal static class Eventually
{
    /// <summary>Retries <paramref name="assertion"/> until it passes; the last failure is rethrown after <paramref name="timeout"/>.</summary>
    public static async Task Holds(Func<Task> assertion, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            try
            {
                await assertion();
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    public static Task Holds(Action assertion, TimeSpan? timeout = null) => Holds(() =>
    {
        assertion();
        return Task.CompletedTask;
    }, timeout);
}

/// <summary>Several ActorSystems on loopback port 0 joined into one real cluster, each with Balancer started.</summary>
internal static class InProcessCluster
{
    public static async Task<List<ActorSystem>> StartAsync(string name, Config config, int nodes = 3, Func<int, Config>? perNode = null)
    {
        var systems = Enumerable.Range(0, nodes)
            .Select(i => ActorSystem.Create(name, (perNode?.Invoke(i) ?? Config.Empty).WithFallback(config).WithFallback(BalancerHost.ClusterOfOne)))
            .ToList();
        // Balancer (and so DistributedData) starts before a node joins, as in a node process:
        // a replica that joined first would drop its peers' gossip until it starts.
        systems.ForEach(s => BalancerExtension.Get(s));
        var seed = Akka.Cluster.Cluster.Get(systems[0]).SelfAddress;
        systems.ForEach(s => Akka.Cluster.Cluster.Get(s).Join(seed));
        await Eventually.Holds(
            () => Assert.All(systems, s => Assert.Equal(nodes, Akka.Cluster.Cluster.Get(s).State.Members.Count(m => m.Status == MemberStatus.Up))),
            TimeSpan.FromSeconds(30));
        foreach (var system in systems)
        {
            await BalancerHost.WaitForPoolRoutersAsync(BalancerExtension.Get(system));
        }
        return systems;
    }
}
