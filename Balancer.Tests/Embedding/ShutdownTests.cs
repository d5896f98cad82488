using System.Collections.Concurrent;
using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Balancer.Tests.TestSupport;
using Xunit.Abstractions;

namespace Balancer.Tests.Embedding;

/// <summary>Stopping every member of a cluster at once (a deploy, the end of a test run) is quick and quiet, with Balancer's cluster tuning as WithBalancer brings it.</summary>
[Collection(SerialCollection.Name)]
public class ShutdownTests(ITestOutputHelper output)
{
    [Fact]
    public async Task EveryMemberStoppedAtOnce_TheProbeRegionStopsAtOnce_WithAtMostOneRoundPerMemberOfProbeMessagesToDeadLetters()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        var config = ConfigurationFactory.ParseString($$"""
            balancer.pools.inventory {
              health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
              {{backends.Hocon()}}
            }
            """).WithFallback(Balancer.Hosting.ClusterTuning.Config);
        var nodes = await InProcessCluster.StartAsync("orders", config, nodes: 3);
        var deadProbeMessages = new ConcurrentQueue<string>();
        var warnings = new ConcurrentQueue<string>();
        foreach (var node in nodes)
        {
            var collector = node.ActorOf(Props.Create(() => new DeadLetterCollector(deadProbeMessages, warnings)));
            node.EventStream.Subscribe(collector, typeof(DeadLetter));
            node.EventStream.Subscribe(collector, typeof(Warning));
        }
        // The probes run sharded: every backend's verdict reaches every member.
        await Eventually.Holds(() => Assert.All(nodes, n => Assert.Equal(3, BalancerExtension.Get(n).Client.View("inventory").Routable.Length)), TimeSpan.FromSeconds(20));

        var stopping = Stopwatch.StartNew();
        var stopped = await Task.WhenAll(nodes.Select(async n =>
        {
            await CoordinatedShutdown.Get(n).Run(CoordinatedShutdown.ClrExitReason.Instance);
            return stopping.Elapsed;
        })).WaitAsync(TimeSpan.FromSeconds(40));
        output.WriteLine($"members stopped after {string.Join(", ", stopped.Select(t => $"{t.TotalSeconds:0.0} s"))}");

        // The probe region stops at once instead of handing its shards to members that are leaving
        // too (which timed out after the phase's 10 s); the oldest member, holding the probes'
        // coordinator, still waits out its singleton's hand-over retries to the members that left.
        // A member whose peers left a moment before may wait out Akka's 5 s association gate
        // towards them (cluster-tuning.conf keeps it): well under the phase's 10 s all the same.
        var ordered = stopped.Order().ToList();
        Assert.True(ordered[1] < TimeSpan.FromSeconds(6), $"members stopped after {string.Join(", ", ordered.Select(t => $"{t.TotalSeconds:0.0} s"))}");
        Assert.True(ordered[2] < TimeSpan.FromSeconds(8), $"the last member took {ordered[2].TotalSeconds:0.0} s to stop");
        Assert.DoesNotContain(warnings, w => w.Contains("Graceful shutdown of shard region timed out", StringComparison.Ordinal));
        // A member's last reconcile round may still reach a region that another member stopped a
        // moment before (the members' phases are not in step): at most one round from each of the
        // others, one message per backend. A region handing its shards off for the phase's whole
        // 10 s lost one every second.
        Assert.True(deadProbeMessages.Count <= (nodes.Count - 1) * backends.Backends.Count, $"{deadProbeMessages.Count} probe messages to dead letters: {string.Join("; ", deadProbeMessages)}");
    }

    private sealed class DeadLetterCollector : ReceiveActor
    {
        public DeadLetterCollector(ConcurrentQueue<string> dead, ConcurrentQueue<string> warnings)
        {
            Receive<DeadLetter>(letter =>
            {
                if (letter.Message is Balancer.Health.ProbeEntity.EnsureProbe)
                {
                    dead.Enqueue($"{letter.Message} to {letter.Recipient}");
                }
            });
            Receive<Warning>(w => warnings.Enqueue(w.Message?.ToString() ?? ""));
        }
    }
}
