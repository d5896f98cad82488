using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Balancer.Affinity;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;
using BenchmarkDotNet.Attributes;

namespace Balancer.Benchmarks;

/// <summary>
/// The per-request cost of picking a backend on the data plane: an algorithm over a published
/// snapshot, and a session's lookup in the local affinity cache. Target: under 100 ns and no
/// allocation for round-robin and for a cache hit.
/// </summary>
[MemoryDiagnoser]
public class SelectBenchmarks
{
    private const int Sessions = 100_000;
    private PoolSnapshot _roundRobin = null!;
    private PoolSnapshot _leastConnections = null!;
    private PoolSnapshot _maglev = null!;
    private AffinityTable _affinity = null!;
    private string[] _keys = null!;
    private IPAddress[] _clients = null!;
    private Balancer.Client.IBalancerClient _client = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _roundRobin = Snapshot("round-robin");
        _leastConnections = Snapshot("least-connections");
        _maglev = Snapshot("maglev");
        var pool = Pool("round-robin", "affinity { mode = \"header:X-Session\", max-entries = 200000 }");
        var now = DateTimeOffset.UtcNow;
        _affinity = new AffinityTable(pool, ActorRefs.Nobody, () => now, new AffinityKey("0123456789abcdef-bench-key"), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(3));
        _keys = Enumerable.Range(0, Sessions).Select(i => $"session-{i:x8}").ToArray();
        foreach (var key in _keys)
        {
            _affinity.Pin(key, "b" + (key.GetHashCode() & 7));
        }
        _clients = Enumerable.Range(0, 1024).Select(i => new IPAddress([10, 0, (byte)(i >> 8), (byte)i])).ToArray();

        // The embedding API over the same kind of pool, with the affinity table above.
        var registry = new PoolRegistry();
        var handle = new PoolHandle(PoolSnapshotBuilder.Build(1, pool, _ => BackendRuntimeState.Default, _ => new BackendCounters(), new AlgorithmState()));
        handle.PublishAffinity(_affinity);
        registry.Set(handle);
        _client = new Balancer.Client.BalancerClient(registry, new Balancer.Management.EventFeed());
    }

    /// <summary>IBalancerClient.Select then Complete, round-robin: a client-side call's whole overhead.</summary>
    [Benchmark]
    public void ClientSelectAndComplete()
    {
        var lease = _client.Select("app");
        lease.Complete(BackendOutcome.Success, 200);
    }

    /// <summary>IBalancerClient.Select with an affinity key of a busy session, then Complete.</summary>
    [Benchmark]
    public void ClientSelectStickyAndComplete()
    {
        var lease = _client.Select("app", _keys[(_next++ * 7919) & 1023]);
        lease.Complete(BackendOutcome.Success, 200);
    }

    [Benchmark(Baseline = true)]
    public Backend? RoundRobin()
    {
        var request = new RoutingRequest(null);
        var attempted = new AttemptedBackends();
        return _roundRobin.Select(in request, ref attempted);
    }

    [Benchmark]
    public Backend? LeastConnections()
    {
        var request = new RoutingRequest(null);
        var attempted = new AttemptedBackends();
        return _leastConnections.Select(in request, ref attempted);
    }

    [Benchmark]
    public Backend? MaglevBySourceIp()
    {
        var request = new RoutingRequest(_clients[_next++ & 1023]);
        var attempted = new AttemptedBackends();
        return _maglev.Select(in request, ref attempted);
    }

    /// <summary>
    /// A known session picked at random among the 100,000 in the node's cache: every lookup misses
    /// the CPU caches, so this is the cost bound by memory latency.
    /// </summary>
    [Benchmark]
    public string? AffinityCacheHit() => _affinity.Find(_keys[(int)(unchecked((uint)_next++ * 7919u) % Sessions)]);

    /// <summary>A known session among 1,024 busy ones (in a 100,000-entry cache): the usual case of a busy node.</summary>
    [Benchmark]
    public string? AffinityCacheHitBusySessions() => _affinity.Find(_keys[(_next++ * 7919) & 1023]);

    private static Balancer.Configuration.PoolSettings Pool(string algorithm, string extra = "") =>
        BalancerSettings.Create(ConfigurationFactory.ParseString($$"""
            balancer.node.affinity-key = "benchmark-affinity-key-0123456789"
            balancer.pools.app {
              algorithm = {{algorithm}}
              {{extra}}
              backends { {{string.Join("\n", Enumerable.Range(0, 8).Select(i => $"b{i} = \"127.0.0.1:{9000 + i}\""))}} }
            }
            """)).FindPool("app")!;

    private static PoolSnapshot Snapshot(string algorithm)
    {
        var counters = new Dictionary<string, BackendCounters>();
        return PoolSnapshotBuilder.Build(1, Pool(algorithm), _ => BackendRuntimeState.Default,
            name => counters.TryGetValue(name, out var c) ? c : counters[name] = new BackendCounters(), new AlgorithmState());
    }
}
