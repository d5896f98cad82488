namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// State of a pool's algorithm that outlives one snapshot: the rotation counter and the random source.
/// Owned by the pool's routing actor and handed to every algorithm it prepares.
/// </summary>
public sealed class AlgorithmState
{
    private long _counter = -1;

    /// <summary>Creates the state with the given random source (a seeded one makes tests exact).</summary>
    public AlgorithmState(System.Random? random = null)
    {
        Random = random ?? System.Random.Shared;
    }

    /// <summary>Source of randomness for random, power-of-two and tie breaks.</summary>
    public System.Random Random { get; }

    /// <summary>The next value of the pool-wide rotation counter.</summary>
    public long Next() => Interlocked.Increment(ref _counter);
}
