using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Tests.TestSupport;

/// <summary>Builds pools from HOCON the way a node does, for tests below the actor layer.</summary>
internal static class TestPools
{
    public static PoolSettings Pool(string body, string name = "app")
    {
        var config = ConfigurationFactory.ParseString($"balancer.pools.{name} {{\n{body}\n}}");
        return BalancerSettings.Create(config).FindPool(name)!;
    }

    /// <summary>"a=100,b=300" → backends a, b on distinct loopback ports with those weights.</summary>
    public static string Backends(params (string Name, int Weight)[] backends) =>
        "backends {\n" + string.Join("\n", backends.Select((b, i) => $"  {b.Name} {{ address = \"127.0.0.1:{10000 + i}\", weight = {b.Weight} }}")) + "\n}";

    public static string Backends(int count) => Backends(Enumerable.Range(0, count).Select(i => ($"b{i}", 100)).ToArray());

    public static PoolSnapshot Snapshot(PoolSettings settings, AlgorithmState? state = null, Dictionary<string, BackendCounters>? counters = null)
    {
        counters ??= new Dictionary<string, BackendCounters>();
        return PoolSnapshotBuilder.Build(1, settings, _ => BackendRuntimeState.Default,
            n => counters.TryGetValue(n, out var c) ? c : counters[n] = new BackendCounters(),
            state ?? new AlgorithmState(new Random(42)));
    }

    public static Dictionary<string, int> Distribution(PoolSnapshot snapshot, int requests, Func<int, RoutingRequest>? request = null)
    {
        var counts = snapshot.Backends.ToDictionary(b => b.Name, _ => 0);
        for (var i = 0; i < requests; i++)
        {
            var attempted = new AttemptedBackends();
            var routing = request?.Invoke(i) ?? new RoutingRequest(null);
            var backend = snapshot.Select(in routing, ref attempted)!;
            counts[backend.Name]++;
        }
        return counts;
    }
}
