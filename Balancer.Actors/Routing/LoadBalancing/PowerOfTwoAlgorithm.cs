using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>The less loaded of two distinct random backends (Mitzenmacher's power of two choices).</summary>
internal sealed class PowerOfTwoAlgorithm : Algorithm
{
    private readonly AlgorithmState _state;

    public PowerOfTwoAlgorithm(ImmutableArray<Backend> backends, AlgorithmState state) : base(backends)
    {
        _state = state;
    }

    public override int Pick(in RoutingRequest request)
    {
        var count = Backends.Length;
        if (count <= 1)
        {
            return count - 1;
        }
        var first = _state.Random.Next(count);
        var second = _state.Random.Next(count - 1);
        if (second >= first)
        {
            second++;
        }
        return LoadComparer.IsLessLoaded(Backends[second], Backends[first]) ? second : first;
    }
}
