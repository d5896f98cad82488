using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>A random backend in proportion to weight.</summary>
internal sealed class RandomAlgorithm : Algorithm
{
    private readonly AlgorithmState _state;
    private readonly long[] _cumulativeWeights;

    public RandomAlgorithm(ImmutableArray<Backend> backends, AlgorithmState state) : base(backends)
    {
        _state = state;
        _cumulativeWeights = new long[backends.Length];
        long sum = 0;
        for (var i = 0; i < backends.Length; i++)
        {
            sum += Math.Max(1, backends[i].Weight);
            _cumulativeWeights[i] = sum;
        }
    }

    public override int Pick(in RoutingRequest request)
    {
        if (_cumulativeWeights.Length == 0)
        {
            return -1;
        }
        var target = _state.Random.NextInt64(_cumulativeWeights[^1]);
        var index = Array.BinarySearch(_cumulativeWeights, target + 1);
        return index >= 0 ? index : ~index;
    }
}
