using System.Collections.Immutable;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// Smooth weighted round-robin (nginx's algorithm: weights 5,1,1 give a a b a c a a, not a a a a a b c).
/// The whole cycle is computed once per snapshot so that picking is one atomic increment and an array
/// read, with no shared mutable weights to lock.
/// </summary>
internal sealed class WeightedRoundRobinAlgorithm : Algorithm
{
    /// <summary>Longest cycle kept; larger weight sums are scaled down to it (relative error ≤ n/MaxCycle).</summary>
    internal const int MaxCycle = 1 << 14;

    private readonly AlgorithmState _state;
    private readonly int[] _schedule;

    public WeightedRoundRobinAlgorithm(ImmutableArray<Backend> backends, AlgorithmState state) : base(backends)
    {
        _state = state;
        _schedule = BuildSchedule(backends.Select(b => b.Weight).ToArray());
    }

    public override int Pick(in RoutingRequest request)
    {
        var schedule = _schedule;
        return schedule.Length == 0 ? -1 : schedule[(ulong)_state.Next() % (ulong)schedule.Length];
    }

    internal static int[] BuildSchedule(int[] weights)
    {
        if (weights.Length == 0)
        {
            return [];
        }
        var reduced = weights.Select(w => (long)Math.Max(1, w)).ToArray();
        var divisor = reduced.Aggregate(Gcd);
        for (var i = 0; i < reduced.Length; i++)
        {
            reduced[i] /= divisor;
        }
        var total = reduced.Sum();
        if (total > MaxCycle)
        {
            for (var i = 0; i < reduced.Length; i++)
            {
                reduced[i] = Math.Max(1, (long)Math.Round(reduced[i] * (double)MaxCycle / total));
            }
            total = reduced.Sum();
        }

        var schedule = new int[total];
        var current = new long[reduced.Length];
        for (var slot = 0; slot < total; slot++)
        {
            var best = 0;
            for (var i = 0; i < reduced.Length; i++)
            {
                current[i] += reduced[i];
                if (current[i] > current[best])
                {
                    best = i;
                }
            }
            current[best] -= total;
            schedule[slot] = best;
        }
        return schedule;
    }

    private static long Gcd(long a, long b)
    {
        while (b != 0)
        {
            (a, b) = (b, a % b);
        }
        return a;
    }
}
