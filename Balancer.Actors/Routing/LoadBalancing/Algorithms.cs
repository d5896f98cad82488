using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>The names of the load-balancing algorithms, as written in <c>algorithm = ...</c>.</summary>
public static class Algorithms
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

    /// <summary>Prepares the algorithm <paramref name="algorithm"/> for <paramref name="backends"/>.</summary>
    public static Algorithm Create(string algorithm, ImmutableArray<Backend> backends, HashKey hashKey, AlgorithmState state) => algorithm switch
    {
        RoundRobin => new RoundRobinAlgorithm(backends, state),
        WeightedRoundRobin => new WeightedRoundRobinAlgorithm(backends, state),
        LeastConnections => new LeastConnectionsAlgorithm(backends, state),
        PowerOfTwo => new PowerOfTwoAlgorithm(backends, state),
        ConsistentHash => new ConsistentHashAlgorithm(backends, hashKey, state),
        Maglev => new MaglevAlgorithm(backends, hashKey, state),
        Random => new RandomAlgorithm(backends, state),
        First => new FirstAlgorithm(backends),
        _ => throw new ArgumentException($"unknown algorithm \"{algorithm}\"", nameof(algorithm)),
    };
}
