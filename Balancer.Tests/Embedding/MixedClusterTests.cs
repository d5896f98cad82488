using System.Collections.Concurrent;
using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using AkkaCluster = Akka.Cluster.Cluster;
using Akka.Configuration;
using Akka.Event;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Embedding;

/// <summary>
/// A host's cluster where the oldest member does not run Balancer and no role says which members
/// do: the probe shards' coordinator would live on that member and never start. Balancer must say
/// so and still probe every backend.
/// </summary>
[Collection(SerialCollection.Name)]
public class MixedClusterTests
{
    [Fact]
    public async Task OldestMemberWithoutBalancer_EveryBalancerMemberWarnsOnce_ProbesItself_AndSeesABackendDownWithin1500ms()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        var systems = new List<ActorSystem>();
        try
        {
            // The oldest member: the host's own service, without Balancer.
            var oldest = ActorSystem.Create("shop", BalancerHost.ClusterOfOne);
            systems.Add(oldest);
            var seed = AkkaCluster.Get(oldest).SelfAddress;
            AkkaCluster.Get(oldest).Join(seed);
            await Eventually.Holds(() => Assert.Equal(MemberStatus.Up, AkkaCluster.Get(oldest).SelfMember.Status), TimeSpan.FromSeconds(20));

            var warnings = new ConcurrentQueue<(int Member, string Text)>();
            var balancerConfig = ConfigurationFactory.ParseString($$"""
                balancer.pools.app {
                  health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
                  slow-start = 0s
                  {{backends.Hocon()}}
                }
                """).WithFallback(BalancerHost.ClusterOfOne);
            for (var i = 1; i <= 2; i++)
            {
                var member = i;
                var system = ActorSystem.Create("shop", balancerConfig);
                systems.Add(system);
                var collector = system.ActorOf(Props.Create(() => new WarningCollector(member, warnings)));
                system.EventStream.Subscribe(collector, typeof(Warning));
                BalancerExtension.Get(system);
                AkkaCluster.Get(system).Join(seed);
            }
            var balancerMembers = systems.Skip(1).ToList();
            await Eventually.Holds(() => Assert.All(systems, s => Assert.Equal(3, AkkaCluster.Get(s).State.Members.Count(m => m.Status == MemberStatus.Up))), TimeSpan.FromSeconds(30));

            // Each Balancer member says once why it probes by itself, naming the oldest member.
            await Eventually.Holds(() => Assert.Equal([1, 2], ProbeWarnings(warnings).Select(w => w.Member).Order()), TimeSpan.FromSeconds(30));
            Assert.All(ProbeWarnings(warnings), w => Assert.Contains($"the oldest member ({seed})", w.Text));
            await Eventually.Holds(() => Assert.All(balancerMembers, s => Assert.True(Backend(s, "b").Healthy)), TimeSpan.FromSeconds(10));

            await new HttpClient().PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
            var failed = Stopwatch.StartNew();
            var seenDown = new TimeSpan?[balancerMembers.Count];
            while (seenDown.Any(t => t is null) && failed.Elapsed < TimeSpan.FromSeconds(10))
            {
                for (var i = 0; i < balancerMembers.Count; i++)
                {
                    if (seenDown[i] is null && !Backend(balancerMembers[i], "b").Healthy)
                    {
                        seenDown[i] = failed.Elapsed;
                    }
                }
                await Task.Delay(10);
            }
            Assert.All(seenDown, t => Assert.True(t is { } at && at < TimeSpan.FromMilliseconds(1500), $"backend down seen after {t?.TotalMilliseconds:0} ms"));
            // Still once per member, however long it runs.
            Assert.Equal(2, ProbeWarnings(warnings).Count);
        }
        finally
        {
            await Task.WhenAll(systems.Select(s => s.Terminate().WaitAsync(TimeSpan.FromSeconds(20))));
        }
    }

    private static List<(int Member, string Text)> ProbeWarnings(ConcurrentQueue<(int Member, string Text)> warnings) =>
        warnings.Where(w => w.Text.StartsWith("health probes: no shard coordinator", StringComparison.Ordinal)).ToList();

    private static Model.Backend Backend(ActorSystem system, string name) =>
        BalancerExtension.Get(system).Pools.Find("app")!.Snapshot.Backends.Single(b => b.Name == name);

    private sealed class WarningCollector : ReceiveActor
    {
        public WarningCollector(int member, ConcurrentQueue<(int Member, string Text)> warnings) =>
            Receive<Warning>(w => warnings.Enqueue((member, w.Message.ToString() ?? "")));
    }
}
