using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>The first backend in configuration order.</summary>
internal sealed class FirstAlgorithm : Algorithm
{
    public FirstAlgorithm(ImmutableArray<Backend> backends) : base(backends)
    {
    }

    public override int Pick(in RoutingRequest request) => Backends.Length == 0 ? -1 : 0;
}
