using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>The names of the load-balancing algorithms, as written in <c>algorithm = ...</c>.</summary>
public static class LoadBalancingPolicies
{
    /// <summary>Each backend in turn, ignoring weights.</summary>
    public const string RoundRobin = "round-robin";
    /// <summary>Each backend in proportion to its weight, interleaved smoothly (nginx's smooth WRR).</summary>
    public const string WeightedRoundRobin = "weighted-round-robin";
    /// <summary>The backend with the fewest requests in flight per unit of weight.</summary>
    public const string LeastConnections = "least-connections";
    /// <summary>The less loaded of two random backends.</summary>
    public const string PowerOfTwo = "power-of-two";
    /// <summary>A hash ring with virtual nodes over the hash key.</summary>
    public const string ConsistentHash = "consistent-hash";
    /// <summary>Google's Maglev lookup table (65537 entries) over the hash key.</summary>
    public const string Maglev = "maglev";
    /// <summary>A random backend, in proportion to weight.</summary>
    public const string Random = "random";
    /// <summary>The first routable backend in configuration order (active/backup pairs).</summary>
    public const string First = "first";

    /// <summary>Every algorithm name.</summary>
    public static readonly ImmutableArray<string> All =
        [RoundRobin, WeightedRoundRobin, LeastConnections, PowerOfTwo, ConsistentHash, Maglev, Random, First];

    /// <summary>Prepares the picker of <paramref name="algorithm"/> for <paramref name="backends"/>.</summary>
    public static BackendPicker Create(string algorithm, ImmutableArray<Backend> backends, HashKey hashKey, PickerState state) => algorithm switch
    {
        RoundRobin => new RoundRobinPicker(backends, state),
        WeightedRoundRobin => new WeightedRoundRobinPicker(backends, state),
        LeastConnections => new LeastConnectionsPicker(backends, state),
        PowerOfTwo => new PowerOfTwoPicker(backends, state),
        ConsistentHash => new ConsistentHashPicker(backends, hashKey, state),
        Maglev => new MaglevPicker(backends, hashKey, state),
        Random => new RandomPicker(backends, state),
        First => new FirstPicker(backends),
        _ => throw new ArgumentException($"unknown algorithm \"{algorithm}\"", nameof(algorithm)),
    };
}

/// <summary>
/// State of a pool's algorithm that outlives one snapshot: the rotation counter and the random source.
/// Owned by the pool's routing actor and handed to every picker it builds.
/// </summary>
public sealed class PickerState
{
    private long _counter = -1;

    /// <summary>Creates the state with the given random source (a seeded one makes tests exact).</summary>
    public PickerState(System.Random? random = null)
    {
        Random = random ?? System.Random.Shared;
    }

    /// <summary>Source of randomness for random, power-of-two and tie breaks.</summary>
    public System.Random Random { get; }

    /// <summary>The next value of the pool-wide rotation counter.</summary>
    public long Next() => Interlocked.Increment(ref _counter);
}

/// <summary>
/// One algorithm prepared for one set of routable backends. Immutable once built (any precomputed
/// ring, table or schedule is read-only); <see cref="Pick"/> is called concurrently by the data plane.
/// </summary>
public abstract class BackendPicker
{
    /// <summary>The backends <see cref="Pick"/> returns indexes into.</summary>
    protected BackendPicker(ImmutableArray<Backend> backends)
    {
        Backends = backends;
    }

    /// <summary>The routable backends.</summary>
    protected ImmutableArray<Backend> Backends { get; }

    /// <summary>The index of the chosen backend, or -1 when there is none.</summary>
    public abstract int Pick(in RoutingRequest request);
}
