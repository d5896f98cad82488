using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// An algorithm that places a request by the hash of its <c>hash-key</c>, so that one key keeps one
/// backend while the backends stay the same. A request without the key (no such header or cookie, or
/// a TCP connection asked for an HTTP key) goes round-robin.
/// </summary>
internal abstract class HashingAlgorithm : Algorithm
{
    private readonly HashKey _hashKey;
    private readonly AlgorithmState _state;

    protected HashingAlgorithm(ImmutableArray<Backend> backends, HashKey hashKey, AlgorithmState state) : base(backends)
    {
        _hashKey = hashKey;
        _state = state;
    }

    public sealed override int Pick(in RoutingRequest request)
    {
        if (Backends.Length == 0)
        {
            return -1;
        }
        if (!request.TryHash(_hashKey, out var hash))
        {
            return (int)((ulong)_state.Next() % (ulong)Backends.Length);
        }
        return PickByHash(hash);
    }

    /// <summary>The index of the backend that owns <paramref name="hash"/>.</summary>
    internal abstract int PickByHash(ulong hash);
}
