using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// A hash ring (Karger et al.): each backend owns points on a 64-bit circle in proportion to its
/// weight; a key goes to the owner of the first point at or after its hash. Adding or removing one
/// backend of N moves only about 1/N of the keys.
/// </summary>
internal sealed class ConsistentHashAlgorithm : HashingAlgorithm
{
    /// <summary>Points of a backend with the highest weight; 1000 keeps each share within a few percent.</summary>
    internal const int PointsPerBackend = 1000;

    private readonly ulong[] _points;
    private readonly int[] _owners;

    public ConsistentHashAlgorithm(ImmutableArray<Backend> backends, HashKey hashKey, AlgorithmState state) : base(backends, hashKey, state)
    {
        if (backends.Length == 0)
        {
            _points = [];
            _owners = [];
            return;
        }
        var maxWeight = Math.Max(1, backends.Max(b => b.Weight));
        var ring = new List<(ulong Point, int Owner)>();
        for (var i = 0; i < backends.Length; i++)
        {
            var points = Math.Max(1, (int)Math.Round(PointsPerBackend * (double)Math.Max(1, backends[i].Weight) / maxWeight));
            for (var p = 0; p < points; p++)
            {
                // Points hash the backend's name, not its index, so a backend keeps its points when others come and go.
                ring.Add((KeyHash.Of(backends[i].Name, p), i));
            }
        }
        ring.Sort((x, y) => x.Point != y.Point ? x.Point.CompareTo(y.Point) : string.CompareOrdinal(backends[x.Owner].Name, backends[y.Owner].Name));
        _points = ring.Select(r => r.Point).ToArray();
        _owners = ring.Select(r => r.Owner).ToArray();
    }

    internal override int PickByHash(ulong hash)
    {
        var index = Array.BinarySearch(_points, hash);
        if (index < 0)
        {
            index = ~index;
        }
        return _owners[index == _points.Length ? 0 : index];
    }
}
