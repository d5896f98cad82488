namespace Balancer.Tests.TestSupport;

/// <summary>
/// Tests that measure time (detection, failover) or start real node processes run in this
/// collection: alone, after the parallel ones, so that the two cores are theirs and a bound they
/// assert measures the product, not the neighbours.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "serial: timing and processes";
}
