using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>Each backend in turn.</summary>
internal sealed class RoundRobinAlgorithm : Algorithm
{
    private readonly AlgorithmState _state;

    public RoundRobinAlgorithm(ImmutableArray<Backend> backends, AlgorithmState state) : base(backends)
    {
        _state = state;
    }

    public override int Pick(in RoutingRequest request) =>
        Backends.Length == 0 ? -1 : (int)((ulong)_state.Next() % (ulong)Backends.Length);
}
