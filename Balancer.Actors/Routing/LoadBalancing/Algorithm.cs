using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// One algorithm prepared for one set of routable backends. Immutable once built (any precomputed
/// ring, table or schedule is read-only); <see cref="Pick"/> is called concurrently by the data plane.
/// </summary>
public abstract class Algorithm
{
    /// <summary>The backends <see cref="Pick"/> returns indexes into.</summary>
    protected Algorithm(ImmutableArray<Backend> backends)
    {
        Backends = backends;
    }

    /// <summary>The routable backends.</summary>
    protected ImmutableArray<Backend> Backends { get; }

    /// <summary>The index of the chosen backend, or -1 when there is none.</summary>
    public abstract int Pick(in RoutingRequest request);
}
