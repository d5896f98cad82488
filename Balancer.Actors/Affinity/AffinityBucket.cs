using System.Collections.Immutable;
using Akka.DistributedData;

namespace Balancer.Affinity;

/// <summary>The replicated key of one <see cref="AffinityBucket"/>, <c>balancer-affinity-POOL-N</c>.</summary>
public sealed class AffinityBucketKey(string id) : Key<AffinityBucket>(id);

/// <summary>
/// One bucket of a pool's replicated affinity table: session key → <see cref="AffinityEntry"/>, a
/// last-writer-wins map whose "last" is the later expiry (ties go to the ordinally greater backend
/// name, so every node picks the same winner). Unlike Akka's LWWDictionary it records no node
/// addresses, version vectors or dots per entry: an entry is its key, its backend and its expiry,
/// which keeps 100,000 sessions at a few megabytes in memory and on the wire, and needs no pruning
/// when nodes leave. Entries expire by their own clock: a merge drops what has already expired, and
/// <see cref="WithoutExpired"/> sweeps them, so an expired session never comes back from a peer's
/// stale copy. Pins made in one update travel as a delta holding just those entries.
/// </summary>
public sealed class AffinityBucket :
    IDeltaReplicatedData<AffinityBucket, AffinityBucket>,
    IReplicatedDelta,
    IEquatable<AffinityBucket>
{
    // Sorted, so that serializing a bucket (which the replicator does for every digest it compares)
    // writes the same bytes for the same sessions without sorting them each time.
    private static readonly ImmutableSortedDictionary<string, AffinityEntry> NoEntries =
        ImmutableSortedDictionary<string, AffinityEntry>.Empty.WithComparers(StringComparer.Ordinal);

    /// <summary>The bucket with no sessions.</summary>
    public static readonly AffinityBucket Empty = new(NoEntries, null);

    private readonly AffinityBucket? _delta;

    // The bucket this one was made from by local changes only. The replicator merges every update's
    // result back into the value it started from; knowing the result descends from it turns that
    // merge (a pass over thousands of sessions) into a reference check. Cleared once merged, so a
    // bucket never keeps its history alive.
    private AffinityBucket? _ancestor;

    private AffinityBucket(ImmutableSortedDictionary<string, AffinityEntry> entries, AffinityBucket? delta, AffinityBucket? ancestor = null)
    {
        Entries = entries;
        _delta = delta;
        _ancestor = ancestor;
    }

    /// <summary>The sessions of this bucket in key order, expired ones included until they are swept.</summary>
    public ImmutableSortedDictionary<string, AffinityEntry> Entries { get; }

    /// <summary>The number of entries, expired ones included until they are swept.</summary>
    public int Count => Entries.Count;

    /// <summary>The bucket made of <paramref name="entries"/> (as read from the wire).</summary>
    public static AffinityBucket Of(IEnumerable<KeyValuePair<string, AffinityEntry>> entries) =>
        new(NoEntries.AddRange(entries), null);

    /// <summary>The entry of <paramref name="key"/>, expired or not.</summary>
    public bool TryGetValue(string key, out AffinityEntry entry) => Entries.TryGetValue(key, out entry!);

    /// <summary>
    /// Records <paramref name="entry"/> for <paramref name="key"/> when it wins over the entry held
    /// (see the class summary), and adds it to the delta this update replicates.
    /// </summary>
    public AffinityBucket Set(string key, AffinityEntry entry)
    {
        if (Entries.TryGetValue(key, out var held) && !Wins(entry, held))
        {
            return this;
        }
        var delta = (_delta ?? Empty).Entries.SetItem(key, entry);
        return new AffinityBucket(Entries.SetItem(key, entry), new AffinityBucket(delta, null), _ancestor ?? this);
    }

    /// <summary>This bucket without the entries expired at <paramref name="now"/> (a local sweep; not replicated as a delta).</summary>
    public AffinityBucket WithoutExpired(DateTimeOffset now)
    {
        var expired = Entries.Where(e => e.Value.ExpiresAt <= now).Select(e => e.Key).ToList();
        // Counted as descending from this bucket although it lost entries: they were dead already,
        // and a merge with the unswept bucket must not bring them back.
        return expired.Count == 0 ? this : new AffinityBucket(Entries.RemoveRange(expired), _delta, _ancestor ?? this);
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
        ImmutableSortedDictionary<string, AffinityEntry>.Builder? merged = null;
        foreach (var (key, entry) in other.Entries)
        {
            if (entry.ExpiresAt <= now || (Entries.TryGetValue(key, out var held) && !Wins(entry, held)))
            {
                continue;
            }
            merged ??= Entries.ToBuilder();
            merged[key] = entry;
        }
        return merged is null ? Merged(this) : new AffinityBucket(merged.ToImmutable(), null);
    }

    private static AffinityBucket Merged(AffinityBucket result)
    {
        result._ancestor = null;
        return result._delta is null ? result : new AffinityBucket(result.Entries, null);
    }

    /// <summary>
    /// The pins made since the last <see cref="ResetDelta"/>; empty, never null, when there were none
    /// (a sweep): a null delta would make the replicator send its "no delta" marker, which turns every
    /// delta gathered with it into full-state gossip.
    /// </summary>
    public AffinityBucket Delta => _delta ?? Empty;

    /// <inheritdoc />
    public AffinityBucket MergeDelta(AffinityBucket delta) => Merge(delta);

    /// <inheritdoc />
    public AffinityBucket ResetDelta() => _delta is null ? this : new AffinityBucket(Entries, null, _ancestor);

    IReplicatedData IReplicatedData.Merge(IReplicatedData other) => other is AffinityBucket bucket
        ? Merge(bucket)
        : throw new ArgumentException($"cannot merge {other.GetType().Name} into an affinity bucket");

    IReplicatedDelta IDeltaReplicatedData.Delta => Delta;

    IReplicatedData IDeltaReplicatedData.MergeDelta(IReplicatedDelta delta) => ((IReplicatedData)this).Merge(delta);

    IReplicatedData IDeltaReplicatedData.ResetDelta() => ResetDelta();

    IDeltaReplicatedData IReplicatedDelta.Zero => Empty;

    /// <summary>True when <paramref name="candidate"/> replaces <paramref name="held"/> in a merge.</summary>
    internal static bool Wins(AffinityEntry candidate, AffinityEntry held) =>
        candidate.ExpiresAt > held.ExpiresAt ||
        (candidate.ExpiresAt == held.ExpiresAt && string.CompareOrdinal(candidate.Backend, held.Backend) > 0);

    /// <inheritdoc />
    public bool Equals(AffinityBucket? other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }
        if (other is null || other.Count != Count)
        {
            return false;
        }
        foreach (var (key, entry) in Entries)
        {
            if (!other.Entries.TryGetValue(key, out var theirs) || !entry.Equals(theirs))
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
    public override string ToString() => $"AffinityBucket({Count} entries)";
}
