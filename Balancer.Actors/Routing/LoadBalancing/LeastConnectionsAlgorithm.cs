using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// The backend with the fewest requests in flight per unit of weight. Ties rotate so that an idle
/// pool is still spread rather than always sending to the first backend.
/// </summary>
internal sealed class LeastConnectionsAlgorithm : Algorithm
{
    private readonly AlgorithmState _state;

    public LeastConnectionsAlgorithm(ImmutableArray<Backend> backends, AlgorithmState state) : base(backends)
    {
        _state = state;
    }

    public override int Pick(in RoutingRequest request)
    {
        var backends = Backends;
        var count = backends.Length;
        if (count == 0)
        {
            return -1;
        }
        var start = (int)((ulong)_state.Next() % (ulong)count);
        var best = start;
        for (var step = 1; step < count; step++)
        {
            var candidate = start + step;
            if (candidate >= count)
            {
                candidate -= count;
            }
            if (LoadComparer.IsLessLoaded(backends[candidate], backends[best]))
            {
                best = candidate;
            }
        }
        return best;
    }
}
