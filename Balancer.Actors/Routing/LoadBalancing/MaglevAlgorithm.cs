using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing.LoadBalancing;

/// <summary>
/// Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of a prime size filled by each backend's
/// own permutation of the slots, so every backend owns an almost equal share and a change of one
/// backend moves little more than its share. Lookup is one array read. Weights are honoured by letting
/// a backend take a turn only once its weight has accrued enough credit.
/// </summary>
internal sealed class MaglevAlgorithm : HashingAlgorithm
{
    /// <summary>The table size: a prime well above 100 × the backends of any realistic pool.</summary>
    internal const int TableSize = 65537;

    private readonly int[] _table;

    public MaglevAlgorithm(ImmutableArray<Backend> backends, HashKey hashKey, AlgorithmState state) : base(backends, hashKey, state)
    {
        _table = backends.Length == 0 ? [] : BuildTable(backends);
    }

    internal override int PickByHash(ulong hash) => _table[hash % TableSize];

    private static int[] BuildTable(ImmutableArray<Backend> backends)
    {
        var count = backends.Length;
        var offsets = new long[count];
        var skips = new long[count];
        var next = new long[count];
        var credit = new double[count];
        var maxWeight = Math.Max(1, backends.Max(b => b.Weight));
        var normalized = new double[count];
        for (var i = 0; i < count; i++)
        {
            offsets[i] = (long)(KeyHash.Of(backends[i].Name, 0, seed: 0x6d61676c6576) % TableSize);
            skips[i] = (long)(KeyHash.Of(backends[i].Name, 1, seed: 0x736b6970) % (TableSize - 1)) + 1;
            normalized[i] = (double)Math.Max(1, backends[i].Weight) / maxWeight;
        }

        var table = new int[TableSize];
        Array.Fill(table, -1);
        var filled = 0;
        for (var round = 1; filled < TableSize; round++)
        {
            for (var i = 0; i < count && filled < TableSize; i++)
            {
                // A backend with half the top weight takes a slot every other round.
                if (round * normalized[i] < credit[i])
                {
                    continue;
                }
                credit[i] += 1;
                var slot = (offsets[i] + next[i] * skips[i]) % TableSize;
                while (table[slot] >= 0)
                {
                    next[i]++;
                    slot = (offsets[i] + next[i] * skips[i]) % TableSize;
                }
                table[slot] = i;
                next[i]++;
                filled++;
            }
        }
        return table;
    }
}
