using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// The backend with the fewest requests in flight per unit of weight. Ties rotate so that an idle
/// pool is still spread rather than always sending to the first backend.
/// </summary>
internal sealed class LeastConnectionsPicker : BackendPicker
{
    private readonly PickerState _state;

    public LeastConnectionsPicker(ImmutableArray<Backend> backends, PickerState state) : base(backends)
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

/// <summary>The less loaded of two distinct random backends (Mitzenmacher's power of two choices).</summary>
internal sealed class PowerOfTwoPicker : BackendPicker
{
    private readonly PickerState _state;

    public PowerOfTwoPicker(ImmutableArray<Backend> backends, PickerState state) : base(backends)
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
