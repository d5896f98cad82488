using Xunit.Abstractions;
using System.Collections.Concurrent;
using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Embedding;

/// <summary>Replicated sessions fit whatever remoting frame the host has, Akka's default of 128,000 bytes included.</summary>
[Collection(SerialCollection.Name)]
public class FrameSizeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AHundredThousandSessionsInABurst_UnderAkkasDefaultFrame_AreRoutedIdenticallyByTheOtherMember_WithNoOversizedPayload()
    {
        const int sessions = 100_000;
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        var problems = new ConcurrentQueue<string>();
        // The host's own settings: no frame size, so Akka's default; only the pool is Balancer's.
        var config = ConfigurationFactory.ParseString($$"""
            balancer.pools.inventory {
              health-check.kind = none
              affinity.mode = "header:X-Customer"
              {{backends.Hocon()}}
            }
            """);
        var nodes = await InProcessCluster.StartAsync("orders", config, nodes: 2);
        try
        {
            Assert.All(nodes, n => Assert.Equal(128000, Balancer.Replication.BalancerReplicator.FrameBytes(n.Settings.Config)));
            foreach (var node in nodes)
            {
                var collector = node.ActorOf(Props.Create(() => new ProblemCollector(problems)));
                node.EventStream.Subscribe(collector, typeof(Warning));
                node.EventStream.Subscribe(collector, typeof(Error));
            }
            var tables = nodes.Select(n => BalancerExtension.Get(n).Pools.Find("inventory")!.Affinity!).ToList();
            var client = BalancerExtension.Get(nodes[0]).Client;
            // The cluster's affinity key (which session hashes are keyed with) is known to both members.
            await Eventually.Holds(() => Assert.Equal(tables[0].HashOf("k") ?? 0, tables[1].HashOf("k") ?? 1), TimeSpan.FromSeconds(15));

            var burst = Stopwatch.StartNew();
            var pinned = new string[sessions];
            for (var i = 0; i < sessions; i++)
            {
                var lease = client.Select("inventory", $"customer-{i}");
                lease.Complete(BackendOutcome.Success);
                pinned[i] = lease.Backend!.Name;
            }
            var made = burst.Elapsed;
            Assert.Equal(3, pinned.Distinct().Count());

            await Eventually.Holds(() => Assert.Equal(sessions, tables[1].Count), TimeSpan.FromSeconds(60));
            output.WriteLine($"{sessions} sessions made in {made.TotalSeconds:F1} s, all on the other member {burst.Elapsed.TotalSeconds:F1} s after the first");

            var differences = Enumerable.Range(0, sessions).Count(i => tables[1].Lookup(tables[1].HashOf($"customer-{i}")!.Value)?.Backend != pinned[i]);
            Assert.Equal(0, differences);
            Assert.DoesNotContain(problems, p => p.Contains("oversized", StringComparison.OrdinalIgnoreCase) || p.Contains("frame", StringComparison.OrdinalIgnoreCase));
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.Terminate()));
        }
    }

    private sealed class ProblemCollector : ReceiveActor
    {
        public ProblemCollector(ConcurrentQueue<string> problems) =>
            Receive<LogEvent>(e => problems.Enqueue($"{e.LogSource}: {e.Message} {e.Cause?.Message}"));
    }
}
