using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>Each backend in turn.</summary>
internal sealed class RoundRobinPicker : BackendPicker
{
    private readonly PickerState _state;

    public RoundRobinPicker(ImmutableArray<Backend> backends, PickerState state) : base(backends)
    {
        _state = state;
    }

    public override int Pick(in RoutingRequest request) =>
        Backends.Length == 0 ? -1 : (int)((ulong)_state.Next() % (ulong)Backends.Length);
}

/// <summary>The first backend in configuration order.</summary>
internal sealed class FirstPicker : BackendPicker
{
    public FirstPicker(ImmutableArray<Backend> backends) : base(backends)
    {
    }

    public override int Pick(in RoutingRequest request) => Backends.Length == 0 ? -1 : 0;
}

/// <summary>A random backend in proportion to weight.</summary>
internal sealed class RandomPicker : BackendPicker
{
    private readonly PickerState _state;
    private readonly long[] _cumulativeWeights;

    public RandomPicker(ImmutableArray<Backend> backends, PickerState state) : base(backends)
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
