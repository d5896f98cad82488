using System.Net;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;
using Balancer.Tests.TestSupport;
using static Balancer.Tests.TestSupport.TestPools;

namespace Balancer.Tests.Routing;

public class LoadBalancingTests
{
    [Fact]
    public void PickBackend_RoundRobin_EachInTurn()
    {
        var snapshot = Snapshot(Pool("algorithm = round-robin\n" + Backends(("a", 100), ("b", 500), ("c", 1))));
        var order = Enumerable.Range(0, 6).Select(_ => Pick(snapshot)).ToList();
        Assert.Equal(["a", "b", "c", "a", "b", "c"], order);
    }

    [Fact]
    public void PickBackend_WeightedRoundRobin_ThreeToOneWithinOnePercent()
    {
        var snapshot = Snapshot(Pool("algorithm = weighted-round-robin\n" + Backends(("a", 300), ("b", 100))));
        var counts = Distribution(snapshot, 40_000);
        var ratio = (double)counts["a"] / counts["b"];
        Assert.InRange(ratio, 3 * 0.99, 3 * 1.01);
    }

    [Fact]
    public void PickBackend_WeightedRoundRobin_IsSmooth()
    {
        // nginx's smooth WRR: 5,1,1 interleaves as a a b a c a a, never five a's in a row.
        Assert.Equal([0, 0, 1, 0, 2, 0, 0], WeightedRoundRobinAlgorithm.BuildSchedule([5, 1, 1]));
    }

    [Fact]
    public void PickBackend_WeightedRoundRobin_LargeWeightSumsKeepTheirRatio()
    {
        var schedule = WeightedRoundRobinAlgorithm.BuildSchedule([9973, 7919, 1]);
        Assert.True(schedule.Length <= WeightedRoundRobinAlgorithm.MaxCycle);
        var a = schedule.Count(i => i == 0);
        var b = schedule.Count(i => i == 1);
        Assert.InRange((double)a / b, 9973.0 / 7919 * 0.99, 9973.0 / 7919 * 1.01);
        Assert.Contains(2, schedule);
    }

    [Fact]
    public void PickBackend_LeastConnections_LeastLoaded()
    {
        var counters = new Dictionary<string, BackendCounters>();
        var snapshot = Snapshot(Pool("algorithm = least-connections\n" + Backends(3)), counters: counters);
        Start(counters["b0"], 5);
        Start(counters["b1"], 2);
        Start(counters["b2"], 7);
        Assert.Equal("b1", Pick(snapshot));
        Start(counters["b1"], 4);
        Assert.Equal("b0", Pick(snapshot));
    }

    [Fact]
    public void PickBackend_LeastConnections_WeighsInFlightByWeight()
    {
        var counters = new Dictionary<string, BackendCounters>();
        var snapshot = Snapshot(Pool("algorithm = least-connections\n" + Backends(("big", 400), ("small", 100))), counters: counters);
        Start(counters["big"], 6);
        Start(counters["small"], 2);
        // big: 7/400 per unit of weight, small: 3/100: big is less loaded.
        Assert.Equal("big", Pick(snapshot));
    }

    [Fact]
    public void PickBackend_LeastConnections_IdlePoolIsSpread()
    {
        var counts = Distribution(Snapshot(Pool("algorithm = least-connections\n" + Backends(3))), 3000);
        Assert.All(counts.Values, c => Assert.Equal(1000, c));
    }

    [Fact]
    public void PickBackend_PowerOfTwoChoices_LeastLoadedOfTwo()
    {
        var counters = new Dictionary<string, BackendCounters>();
        var snapshot = Snapshot(Pool("algorithm = power-of-two\n" + Backends(3)), counters: counters);
        Start(counters["b0"], 10);
        Start(counters["b1"], 10);
        var counts = Distribution(snapshot, 3000);
        // b2 is idle: it wins every draw that includes it (2 of every 3 pairs).
        Assert.InRange(counts["b2"], 1900, 2100);
        Assert.InRange(counts["b0"] + counts["b1"], 900, 1100);
    }

    [Fact]
    public void PickBackend_Random_FollowsWeights()
    {
        var counts = Distribution(Snapshot(Pool("algorithm = random\n" + Backends(("a", 300), ("b", 100)))), 40_000);
        Assert.InRange((double)counts["a"] / counts["b"], 2.8, 3.2);
    }

    [Fact]
    public void PickBackend_First_AlwaysFirstRoutable()
    {
        var settings = Pool("algorithm = first\n" + Backends(3));
        Assert.Equal("b0", Pick(Snapshot(settings)));
        var withoutFirst = PoolSnapshotBuilder.Build(2, settings,
            n => n == "b0" ? new BackendRuntimeState(BackendAdminState.Maint) : BackendRuntimeState.Default,
            _ => new BackendCounters(), new AlgorithmState());
        Assert.Equal("b1", Pick(withoutFirst));
    }

    [Theory]
    [InlineData("consistent-hash")]
    [InlineData("maglev")]
    public void PickBackend_Hashing_SameKeySameBackend(string algorithm)
    {
        var snapshot = Snapshot(Pool($"algorithm = {algorithm}\nhash-key = source-ip\n" + Backends(5)));
        for (var i = 0; i < 200; i++)
        {
            var client = IPAddress.Parse($"10.0.{i / 250}.{i % 250}");
            var first = Pick(snapshot, new RoutingRequest(client));
            for (var repeat = 0; repeat < 3; repeat++)
            {
                Assert.Equal(first, Pick(snapshot, new RoutingRequest(client)));
            }
        }
    }

    [Theory]
    [InlineData("consistent-hash", 4)]
    [InlineData("consistent-hash", 9)]
    [InlineData("maglev", 4)]
    [InlineData("maglev", 9)]
    public void PickBackend_Hashing_AddingABackendMovesAtMostItsShare(string algorithm, int before)
    {
        var small = Snapshot(Pool($"algorithm = {algorithm}\n" + Backends(before)));
        var large = Snapshot(Pool($"algorithm = {algorithm}\n" + Backends(before + 1)));
        const int keys = 100_000;
        var moved = 0;
        for (var i = 0; i < keys; i++)
        {
            var hash = KeyHash.Of("session-" + i);
            if (PickByHash(small, hash) != PickByHash(large, hash))
            {
                moved++;
            }
        }
        // Ideal: exactly the new backend's share, 1/N of the keys with N backends after the change.
        var ideal = (double)keys / (before + 1);
        Assert.InRange(moved, ideal * 0.8, ideal * 1.1);
    }

    [Theory]
    [InlineData("consistent-hash")]
    [InlineData("maglev")]
    public void PickBackend_Hashing_SharesFollowWeights(string algorithm)
    {
        var snapshot = Snapshot(Pool($"algorithm = {algorithm}\n" + Backends(("a", 200), ("b", 100), ("c", 100))));
        var counts = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0 };
        for (var i = 0; i < 100_000; i++)
        {
            counts[PickByHash(snapshot, KeyHash.Of("k" + i))]++;
        }
        Assert.InRange(counts["a"] / 100_000.0, 0.45, 0.55);
        Assert.InRange(counts["b"] / 100_000.0, 0.22, 0.28);
    }

    [Theory]
    [InlineData("header:X-Session", "X-Session")]
    [InlineData("cookie:sid", "Cookie")]
    [InlineData("path", null)]
    public void PickBackend_Hashing_HttpKeys(string hashKey, string? header)
    {
        var snapshot = Snapshot(Pool($"algorithm = maglev\nhash-key = \"{hashKey}\"\n" + Backends(5)));
        var seen = new HashSet<string>();
        for (var i = 0; i < 50; i++)
        {
            var picks = Enumerable.Range(0, 3).Select(_ =>
            {
                var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
                context.Request.Path = header is null ? $"/item/{i}" : "/";
                if (header == "Cookie")
                {
                    context.Request.Headers.Cookie = $"other=1; sid=s{i}";
                }
                else if (header is not null)
                {
                    context.Request.Headers[header] = $"s{i}";
                }
                return Pick(snapshot, new RoutingRequest(IPAddress.Loopback, context));
            }).Distinct().ToList();
            Assert.Single(picks);
            seen.Add(picks[0]);
        }
        Assert.True(seen.Count >= 4, "50 keys should spread over most of 5 backends");
    }

    [Fact]
    public void PickBackend_Hashing_MissingKeyFallsBackToRoundRobin()
    {
        var snapshot = Snapshot(Pool("algorithm = consistent-hash\nhash-key = \"header:X-Session\"\n" + Backends(3)));
        var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        var picks = Enumerable.Range(0, 3).Select(_ => Pick(snapshot, new RoutingRequest(IPAddress.Loopback, context))).ToList();
        Assert.Equal(3, picks.Distinct().Count());
    }

    [Fact]
    public void Select_SkipsAttemptedBackends_ThenGivesUp()
    {
        var snapshot = Snapshot(Pool("algorithm = maglev\n" + Backends(3)));
        var request = new RoutingRequest(IPAddress.Parse("192.0.2.7"));
        var attempted = new AttemptedBackends();
        var names = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            names.Add(snapshot.Select(in request, ref attempted)!.Name);
        }
        Assert.Equal(3, names.Distinct().Count());
        Assert.Null(snapshot.Select(in request, ref attempted));
    }

    [Fact]
    public void Select_PinnedFirst_ThenBalancedWithoutRevisitingIt()
    {
        var snapshot = Snapshot(Pool("algorithm = round-robin\n" + Backends(3)));
        var pinned = snapshot.Routable[1];
        var request = new RoutingRequest(null);
        var attempted = new AttemptedBackends();
        Assert.Same(pinned, snapshot.Select(in request, ref attempted, pinned));
        var others = new[] { snapshot.Select(in request, ref attempted, pinned)!, snapshot.Select(in request, ref attempted, pinned)! };
        Assert.DoesNotContain(pinned, others);
        Assert.Equal(2, others.Distinct().Count());
        Assert.Null(snapshot.Select(in request, ref attempted, pinned));
    }

    [Fact]
    public void Snapshot_ExcludesDrainMaintZeroWeightAndUnhealthy()
    {
        var settings = Pool("algorithm = round-robin\npanic-threshold = 0%\n" + Backends(("a", 100), ("b", 100), ("c", 100), ("d", 0), ("e", 100)));
        var snapshot = PoolSnapshotBuilder.Build(1, settings, n => n switch
        {
            "a" => new BackendRuntimeState(BackendAdminState.Drain),
            "b" => new BackendRuntimeState(BackendAdminState.Maint),
            "c" => new BackendRuntimeState(Healthy: false),
            _ => BackendRuntimeState.Default,
        }, _ => new BackendCounters(), new AlgorithmState());
        Assert.Equal(["e"], snapshot.Routable.Select(b => b.Name));
        Assert.False(snapshot.Panic);
    }

    [Fact]
    public void Snapshot_BelowPanicThreshold_RoutesToAllButMaintenance()
    {
        var settings = Pool("panic-threshold = 50%\n" + Backends(4));
        var snapshot = PoolSnapshotBuilder.Build(1, settings, n => n switch
        {
            "b0" or "b1" or "b2" => new BackendRuntimeState(Healthy: false),
            _ => BackendRuntimeState.Default,
        }, _ => new BackendCounters(), new AlgorithmState());
        Assert.True(snapshot.Panic);
        Assert.Equal(4, snapshot.Routable.Length);
    }

    private static string Pick(PoolSnapshot snapshot) => Pick(snapshot, new RoutingRequest(null));

    private static string Pick(PoolSnapshot snapshot, RoutingRequest request)
    {
        var attempted = new AttemptedBackends();
        return snapshot.Select(in request, ref attempted)!.Name;
    }

    private static string PickByHash(PoolSnapshot snapshot, ulong hash) => snapshot.Algorithm switch
    {
        ConsistentHashAlgorithm ring => snapshot.Routable[ring.PickByHash(hash)].Name,
        MaglevAlgorithm maglev => snapshot.Routable[maglev.PickByHash(hash)].Name,
        _ => throw new InvalidOperationException("not a hashing algorithm"),
    };

    private static void Start(BackendCounters counters, int times)
    {
        for (var i = 0; i < times; i++)
        {
            counters.Start();
        }
    }
}
