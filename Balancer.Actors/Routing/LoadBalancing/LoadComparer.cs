using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>How the load-aware algorithms compare two backends.</summary>
internal static class LoadComparer
{
    /// <summary>(inFlight + 1) / weight of <paramref name="a"/> is below that of <paramref name="b"/>.</summary>
    public static bool IsLessLoaded(Backend a, Backend b)
    {
        // Cross-multiplied to stay in integers; +1 so that weight still separates idle backends.
        var loadA = (a.Counters.InFlight + 1) * Math.Max(1, b.Weight);
        var loadB = (b.Counters.InFlight + 1) * Math.Max(1, a.Weight);
        return loadA < loadB;
    }
}
