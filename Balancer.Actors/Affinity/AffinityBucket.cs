using System.Collections.Immutable;
using Akka.DistributedData;

namespace Balancer.Affinity;

/// <summary>The replicated key of one <see cref="AffinityBucket"/>, <c>balancer-sessions-POOL-N</c>.</summary>
public sealed class AffinityBucketKey(string id) : Key<AffinityBucket>(id);

/// <summary>
/// One bucket of a pool's replicated session table: session hash (<see cref="SessionHash"/>) →
/// <see cref="AffinityEntry"/>, a last-writer-wins map whose "last" is <see cref="AffinityEntry.Wins"/>,
/// holding at most <see cref="Capacity"/> sessions. Unlike Akka's LWWDictionary it records no node
/// addresses, version vectors or dots per entry: an entry is its hash, its backend and its expiry,
/// about 18 bytes on the wire, and needs no pruning when nodes leave.
/// <para>
/// Entries expire by their own clock: a merge drops what has already expired, and
/// <see cref="WithoutExpired"/> sweeps them, so an expired session never comes back from a peer's
/// stale copy. A bucket over its capacity evicts the sessions closest to expiry, those seen only
/// once first, but always keeps a quarter of its room for them, so new sessions are still pinned when
/// the table is full of established ones. Eviction is a function of the entries alone, so every
/// node evicts the same ones and merges still converge. Pins made in one update travel as a delta
/// holding just those entries.
/// </para>
/// </summary>
public sealed class AffinityBucket :
    IDeltaReplicatedData<AffinityBucket, AffinityBucket>,
    IReplicatedDelta,
    IEquatable<AffinityBucket>
{
    // Sorted, so that serializing a bucket (which the replicator does for every digest it compares)
    // writes the same bytes for the same sessions without sorting them each time.
    private static readonly ImmutableSortedDictionary<ulong, AffinityEntry> NoEntries = ImmutableSortedDictionary<ulong, AffinityEntry>.Empty;

    /// <summary>The bucket with no sessions and no capacity set.</summary>
    public static readonly AffinityBucket Empty = new(NoEntries, 0, null);

    private readonly AffinityBucket? _delta;

    // The bucket this one was made from by local changes only. The replicator merges every update's
    // result back into the value it started from; knowing the result descends from it turns that
    // merge (a pass over thousands of sessions) into a reference check. Cleared once merged, so a
    // bucket never keeps its history alive.
    private AffinityBucket? _ancestor;

    private AffinityBucket(ImmutableSortedDictionary<ulong, AffinityEntry> entries, int capacity, AffinityBucket? delta, AffinityBucket? ancestor = null)
    {
        Entries = entries;
        Capacity = capacity;
        _delta = delta;
        _ancestor = ancestor;
    }

    /// <summary>The sessions of this bucket in hash order, expired ones included until they are swept.</summary>
    public ImmutableSortedDictionary<ulong, AffinityEntry> Entries { get; }

    /// <summary>
    /// The most sessions this bucket keeps (<c>affinity.max-entries</c> over the bucket count); 0:
    /// none set yet. The larger of two wins in a merge and in a local update, so nodes that disagree
    /// converge (on the larger: lowering <c>max-entries</c> takes effect only after every node has
    /// stopped at once, as a node that stays gossips the larger capacity back).
    /// </summary>
    public int Capacity { get; }

    /// <summary>The number of entries, expired ones included until they are swept.</summary>
    public int Count => Entries.Count;

    /// <summary>The bucket made of <paramref name="entries"/> (as read from the wire).</summary>
    public static AffinityBucket Of(IEnumerable<KeyValuePair<ulong, AffinityEntry>> entries, int capacity) =>
        new(NoEntries.AddRange(entries), capacity, null);

    /// <summary>The entry of <paramref name="hash"/>, expired or not.</summary>
    public bool TryGetValue(ulong hash, out AffinityEntry entry) => Entries.TryGetValue(hash, out entry!);

    /// <summary>
    /// Records <paramref name="entry"/> for <paramref name="hash"/> when it wins over the entry held,
    /// and adds it to the delta this update replicates. Call <see cref="WithinCapacity"/> once the
    /// update's pins are all set.
    /// </summary>
    public AffinityBucket Set(ulong hash, AffinityEntry entry)
    {
        if (Entries.TryGetValue(hash, out var held) && !entry.Wins(held))
        {
            return this;
        }
        var delta = _delta ?? new AffinityBucket(NoEntries, Capacity, null);
        return new AffinityBucket(Entries.SetItem(hash, entry), Capacity, new AffinityBucket(delta.Entries.SetItem(hash, entry), Capacity, null), _ancestor ?? this);
    }

    /// <summary>
    /// This bucket with at least <paramref name="capacity"/> (the larger one stays, as in a merge, so
    /// a node configured with less cannot make every node evict back and forth), evicting what no
    /// longer fits.
    /// </summary>
    public AffinityBucket WithCapacity(int capacity) =>
        capacity <= Capacity ? WithinCapacity() : new AffinityBucket(Entries, capacity, _delta is null ? null : new AffinityBucket(_delta.Entries, capacity, null), _ancestor ?? this).WithinCapacity();

    /// <summary>This bucket without the sessions over its capacity (see the class summary).</summary>
    public AffinityBucket WithinCapacity()
    {
        var evicted = Evicted(Entries, Capacity);
        return evicted.Count == 0 ? this : new AffinityBucket(Entries.RemoveRange(evicted), Capacity, _delta, _ancestor ?? this);
    }

    /// <summary>
    /// The sessions of <paramref name="entries"/> beyond <paramref name="capacity"/>: the established
    /// keep what is left after a quarter is set aside for sessions seen once (or less, when fewer are
    /// held), and each group loses its entries closest to expiry first (ties by hash).
    /// </summary>
    private static List<ulong> Evicted(ImmutableSortedDictionary<ulong, AffinityEntry> entries, int capacity)
    {
        if (capacity <= 0 || entries.Count <= capacity)
        {
            return [];
        }
        var established = new List<KeyValuePair<ulong, AffinityEntry>>();
        var once = new List<KeyValuePair<ulong, AffinityEntry>>();
        foreach (var entry in entries)
        {
            (entry.Value.Established ? established : once).Add(entry);
        }
        var keptEstablished = Math.Min(established.Count, capacity - Math.Min(once.Count, capacity / 4));
        var keptOnce = Math.Min(once.Count, capacity - keptEstablished);
        var evicted = new List<ulong>(entries.Count - capacity);
        Evict(established, keptEstablished, evicted);
        Evict(once, keptOnce, evicted);
        return evicted;

        static void Evict(List<KeyValuePair<ulong, AffinityEntry>> group, int kept, List<ulong> evicted)
        {
            if (group.Count <= kept)
            {
                return;
            }
            group.Sort(static (a, b) => a.Value.ExpiresAt != b.Value.ExpiresAt ? a.Value.ExpiresAt.CompareTo(b.Value.ExpiresAt) : a.Key.CompareTo(b.Key));
            for (var i = 0; i < group.Count - kept; i++)
            {
                evicted.Add(group[i].Key);
            }
        }
    }

    /// <summary>This bucket without the entries expired at <paramref name="now"/> (a local sweep; not replicated as a delta).</summary>
    public AffinityBucket WithoutExpired(DateTimeOffset now)
    {
        var expired = Entries.Where(e => e.Value.ExpiresAt <= now).Select(e => e.Key).ToList();
        // Counted as descending from this bucket although it lost entries: they were dead already,
        // and a merge with the unswept bucket must not bring them back.
        return expired.Count == 0 ? this : new AffinityBucket(Entries.RemoveRange(expired), Capacity, _delta, _ancestor ?? this);
    }

    /// <inheritdoc />
    public AffinityBucket Merge(AffinityBucket other)
    {
        if (ReferenceEquals(this, other) || ReferenceEquals(_ancestor, other))
        {
            return Merged(this);
        }
        if (ReferenceEquals(other._ancestor, this))
        {
            return Merged(other);
        }
        // Another node's entries are folded into this node's, never the other way round: an entry
        // that expired here and was swept must not return from a peer's unswept copy. A delta of a
        // few pins therefore costs a few lookups.
        var now = DateTimeOffset.UtcNow;
        var capacity = Math.Max(Capacity, other.Capacity);
        ImmutableSortedDictionary<ulong, AffinityEntry>.Builder? merged = null;
        foreach (var (hash, entry) in other.Entries)
        {
            if (entry.ExpiresAt <= now || (Entries.TryGetValue(hash, out var held) && !entry.Wins(held)))
            {
                continue;
            }
            merged ??= Entries.ToBuilder();
            merged[hash] = entry;
        }
        if (merged is null)
        {
            return capacity == Capacity ? Merged(this) : new AffinityBucket(Entries, capacity, null).WithinCapacity();
        }
        var entries = merged.ToImmutable();
        var evicted = Evicted(entries, capacity);
        return new AffinityBucket(evicted.Count == 0 ? entries : entries.RemoveRange(evicted), capacity, null);
    }

    private static AffinityBucket Merged(AffinityBucket result)
    {
        result._ancestor = null;
        return result._delta is null ? result : new AffinityBucket(result.Entries, result.Capacity, null);
    }

    /// <summary>
    /// The pins made since the last <see cref="ResetDelta"/>; empty, never null, when there were none
    /// (a sweep): a null delta would make the replicator send its "no delta" marker, which turns every
    /// delta gathered with it into full-state gossip.
    /// </summary>
    public AffinityBucket Delta => _delta ?? new AffinityBucket(NoEntries, Capacity, null);

    /// <inheritdoc />
    public AffinityBucket MergeDelta(AffinityBucket delta) => Merge(delta);

    /// <inheritdoc />
    public AffinityBucket ResetDelta() => _delta is null ? this : new AffinityBucket(Entries, Capacity, null, _ancestor);

    IReplicatedData IReplicatedData.Merge(IReplicatedData other) => other is AffinityBucket bucket
        ? Merge(bucket)
        : throw new ArgumentException($"cannot merge {other.GetType().Name} into an affinity bucket");

    IReplicatedDelta IDeltaReplicatedData.Delta => Delta;

    IReplicatedData IDeltaReplicatedData.MergeDelta(IReplicatedDelta delta) => ((IReplicatedData)this).Merge(delta);

    IReplicatedData IDeltaReplicatedData.ResetDelta() => ResetDelta();

    IDeltaReplicatedData IReplicatedDelta.Zero => Empty;

    /// <inheritdoc />
    public bool Equals(AffinityBucket? other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }
        if (other is null || other.Count != Count || other.Capacity != Capacity)
        {
            return false;
        }
        foreach (var (hash, entry) in Entries)
        {
            if (!other.Entries.TryGetValue(hash, out var theirs) || !entry.Equals(theirs))
            {
                return false;
            }
        }
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is AffinityBucket other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => Count;

    /// <inheritdoc />
    public override string ToString() => $"AffinityBucket({Count} entries, capacity {Capacity})";
}
