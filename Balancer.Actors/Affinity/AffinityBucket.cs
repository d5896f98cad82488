using System.Collections;
using System.Diagnostics.CodeAnalysis;
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
/// <para>
/// The sessions are one array of 24-byte values sorted by hash: no object per session, a lookup is
/// a binary search, and a merge or a batch of pins is one pass over both sides.
/// </para>
/// </summary>
public sealed class AffinityBucket :
    IDeltaReplicatedData<AffinityBucket, AffinityBucket>,
    IReplicatedDelta,
    IEquatable<AffinityBucket>
{
    // Sorted by hash, one entry per hash: serializing a bucket (which the replicator does for every
    // digest it compares) writes the same bytes for the same sessions without sorting them each time.
    private static readonly KeyValuePair<ulong, AffinityEntry>[] NoEntries = [];

    /// <summary>The bucket with no sessions and no capacity set.</summary>
    public static readonly AffinityBucket Empty = new(NoEntries, 0, null);

    private readonly KeyValuePair<ulong, AffinityEntry>[] _sessions;
    private readonly AffinityBucket? _delta;

    // The bucket this one was made from by local changes only. The replicator merges every update's
    // result back into the value it started from; knowing the result descends from it turns that
    // merge (a pass over thousands of sessions) into a reference check. Cleared once merged, so a
    // bucket never keeps its history alive.
    private AffinityBucket? _ancestor;

    private AffinityBucket(KeyValuePair<ulong, AffinityEntry>[] sessions, int capacity, AffinityBucket? delta, AffinityBucket? ancestor = null)
    {
        _sessions = sessions;
        Capacity = capacity;
        _delta = delta;
        _ancestor = ancestor;
    }

    /// <summary>The sessions of this bucket in hash order, expired ones included until they are swept.</summary>
    public BucketSessions Entries => new(_sessions);

    /// <summary>
    /// The most sessions this bucket keeps (<c>affinity.max-entries</c> over the bucket count); 0:
    /// none set yet. The larger of two wins in a merge and in a local update, so nodes that disagree
    /// converge (on the larger: lowering <c>max-entries</c> takes effect only after every node has
    /// stopped at once, as a node that stays gossips the larger capacity back).
    /// </summary>
    public int Capacity { get; }

    /// <summary>The number of entries, expired ones included until they are swept.</summary>
    public int Count => _sessions.Length;

    /// <summary>The bucket made of <paramref name="entries"/> (as read from the wire); of two entries for one hash, the winner stays.</summary>
    public static AffinityBucket Of(IEnumerable<KeyValuePair<ulong, AffinityEntry>> entries, int capacity)
    {
        var sorted = entries.ToArray();
        if (!IsSortedAndUnique(sorted))
        {
            Array.Sort(sorted, static (a, b) => a.Key.CompareTo(b.Key));
            sorted = Combined(NoEntries, sorted, out _);
        }
        return new AffinityBucket(sorted, capacity, null);
    }

    /// <summary>The bucket of <paramref name="sessions"/>, already sorted by hash with one entry per hash (as the wire form is checked to be); kept, not copied.</summary>
    internal static AffinityBucket OfSorted(KeyValuePair<ulong, AffinityEntry>[] sessions, int capacity) => new(sessions, capacity, null);

    /// <summary>The entry of <paramref name="hash"/>, expired or not.</summary>
    public bool TryGetValue(ulong hash, out AffinityEntry entry) => Entries.TryGetValue(hash, out entry);

    /// <summary>True when this bucket holds an entry for <paramref name="hash"/>, expired or not.</summary>
    public bool Contains(ulong hash) => Entries.ContainsKey(hash);

    /// <summary>
    /// Records <paramref name="entry"/> for <paramref name="hash"/> when it wins over the entry held,
    /// and adds it to the delta this update replicates. Call <see cref="WithinCapacity"/> once the
    /// update's pins are all set.
    /// </summary>
    public AffinityBucket Set(ulong hash, AffinityEntry entry) => SetAll([new(hash, entry)]);

    /// <summary>
    /// <see cref="Set"/> for a batch of pins in one pass over the bucket: of several pins of one
    /// session, the one that wins counts, as when they are set one after the other.
    /// </summary>
    public AffinityBucket SetAll(IReadOnlyCollection<KeyValuePair<ulong, AffinityEntry>> pins)
    {
        var batch = new List<KeyValuePair<ulong, AffinityEntry>>(pins.Count);
        foreach (var pin in pins.OrderBy(p => p.Key))
        {
            if (batch.Count > 0 && batch[^1].Key == pin.Key)
            {
                if (pin.Value.Wins(batch[^1].Value))
                {
                    batch[^1] = pin;
                }
                continue;
            }
            batch.Add(pin);
        }
        batch.RemoveAll(pin => TryGetValue(pin.Key, out var held) && !pin.Value.Wins(held));
        if (batch.Count == 0)
        {
            return this;
        }
        var changes = batch.ToArray();
        var sessions = Replaced(_sessions, changes);
        var delta = new AffinityBucket(_delta is null ? changes : Replaced(_delta._sessions, changes), Capacity, null);
        return new AffinityBucket(sessions, Capacity, delta, _ancestor ?? this);
    }

    /// <summary>
    /// This bucket with at least <paramref name="capacity"/> (the larger one stays, as in a merge, so
    /// a node configured with less cannot make every node evict back and forth), evicting what no
    /// longer fits.
    /// </summary>
    public AffinityBucket WithCapacity(int capacity) =>
        capacity <= Capacity ? WithinCapacity() : new AffinityBucket(_sessions, capacity, _delta is null ? null : new AffinityBucket(_delta._sessions, capacity, null), _ancestor ?? this).WithinCapacity();

    /// <summary>This bucket without the sessions over its capacity (see the class summary).</summary>
    public AffinityBucket WithinCapacity()
    {
        var kept = Kept(_sessions, Capacity);
        return ReferenceEquals(kept, _sessions) ? this : new AffinityBucket(kept, Capacity, _delta, _ancestor ?? this);
    }

    /// <summary>
    /// <paramref name="sessions"/> without those beyond <paramref name="capacity"/>: the established
    /// keep what is left after a quarter is set aside for sessions seen once (or less, when fewer are
    /// held), and each group loses its entries closest to expiry first (ties by hash).
    /// </summary>
    private static KeyValuePair<ulong, AffinityEntry>[] Kept(KeyValuePair<ulong, AffinityEntry>[] sessions, int capacity)
    {
        if (capacity <= 0 || sessions.Length <= capacity)
        {
            return sessions;
        }
        var established = new List<int>();
        var once = new List<int>();
        for (var i = 0; i < sessions.Length; i++)
        {
            (sessions[i].Value.Established ? established : once).Add(i);
        }
        var keptEstablished = Math.Min(established.Count, capacity - Math.Min(once.Count, capacity / 4));
        var keptOnce = Math.Min(once.Count, capacity - keptEstablished);
        var evicted = new bool[sessions.Length];
        Evict(established, keptEstablished);
        Evict(once, keptOnce);
        var kept = new KeyValuePair<ulong, AffinityEntry>[capacity];
        var next = 0;
        for (var i = 0; i < sessions.Length; i++)
        {
            if (!evicted[i])
            {
                kept[next++] = sessions[i];
            }
        }
        return kept;

        void Evict(List<int> group, int keep)
        {
            if (group.Count <= keep)
            {
                return;
            }
            group.Sort((a, b) =>
            {
                var (x, y) = (sessions[a], sessions[b]);
                return x.Value.ExpiresAtUnixMilliseconds != y.Value.ExpiresAtUnixMilliseconds
                    ? x.Value.ExpiresAtUnixMilliseconds.CompareTo(y.Value.ExpiresAtUnixMilliseconds)
                    : x.Key.CompareTo(y.Key);
            });
            for (var i = 0; i < group.Count - keep; i++)
            {
                evicted[group[i]] = true;
            }
        }
    }

    /// <summary>This bucket without the entries expired at <paramref name="now"/> (a local sweep; not replicated as a delta).</summary>
    public AffinityBucket WithoutExpired(DateTimeOffset now)
    {
        var cutoff = now.ToUnixTimeMilliseconds();
        var live = Array.FindAll(_sessions, e => !e.Value.ExpiredAt(cutoff));
        // Counted as descending from this bucket although it lost entries: they were dead already,
        // and a merge with the unswept bucket must not bring them back.
        return live.Length == _sessions.Length ? this : new AffinityBucket(live, Capacity, _delta, _ancestor ?? this);
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
        // that expired here and was swept must not return from a peer's unswept copy.
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var capacity = Math.Max(Capacity, other.Capacity);
        var merged = Combined(_sessions, other._sessions, out var changed, now);
        if (!changed)
        {
            return capacity == Capacity ? Merged(this) : new AffinityBucket(_sessions, capacity, null).WithinCapacity();
        }
        return new AffinityBucket(Kept(merged, capacity), capacity, null);
    }

    private static AffinityBucket Merged(AffinityBucket result)
    {
        result._ancestor = null;
        return result._delta is null ? result : new AffinityBucket(result._sessions, result.Capacity, null);
    }

    /// <summary>
    /// <paramref name="held"/> with each of <paramref name="theirs"/> that is not expired at
    /// <paramref name="now"/> and wins over the entry held for its session (both sorted by hash);
    /// <paramref name="changed"/>: false when nothing of theirs was taken (then it is <paramref name="held"/> itself).
    /// </summary>
    private static KeyValuePair<ulong, AffinityEntry>[] Combined(KeyValuePair<ulong, AffinityEntry>[] held, KeyValuePair<ulong, AffinityEntry>[] theirs, out bool changed, long now = long.MinValue)
    {
        List<KeyValuePair<ulong, AffinityEntry>>? result = null;
        int i = 0, j = 0;
        changed = false;
        while (j < theirs.Length)
        {
            var (hash, entry) = theirs[j];
            if (i < held.Length && held[i].Key < hash)
            {
                result?.Add(held[i]);
                i++;
                continue;
            }
            var same = i < held.Length && held[i].Key == hash;
            // Two of theirs for one hash (an unsorted batch, see Of): the winner of the two stays.
            var previous = result is { Count: > 0 } && result[^1].Key == hash;
            var takes = !entry.ExpiredAt(now) && (previous ? entry.Wins(result![^1].Value) : !same || entry.Wins(held[i].Value));
            if (takes && result is null)
            {
                result = new List<KeyValuePair<ulong, AffinityEntry>>(held.Length + theirs.Length - j);
                result.AddRange(held.AsSpan(0, i));
            }
            if (previous)
            {
                if (takes)
                {
                    result![^1] = theirs[j];
                }
            }
            else if (same)
            {
                result?.Add(takes ? theirs[j] : held[i]);
                i++;
            }
            else if (takes)
            {
                result!.Add(theirs[j]);
            }
            changed |= takes;
            j++;
        }
        if (result is null)
        {
            return held;
        }
        result.AddRange(held.AsSpan(i));
        return result.ToArray();
    }

    /// <summary><paramref name="held"/> with <paramref name="changes"/> (sorted, unique) put in place of, or beside, what it holds.</summary>
    private static KeyValuePair<ulong, AffinityEntry>[] Replaced(KeyValuePair<ulong, AffinityEntry>[] held, KeyValuePair<ulong, AffinityEntry>[] changes)
    {
        var result = new List<KeyValuePair<ulong, AffinityEntry>>(held.Length + changes.Length);
        int i = 0, j = 0;
        while (i < held.Length || j < changes.Length)
        {
            if (j == changes.Length || (i < held.Length && held[i].Key < changes[j].Key))
            {
                result.Add(held[i++]);
            }
            else
            {
                if (i < held.Length && held[i].Key == changes[j].Key)
                {
                    i++;
                }
                result.Add(changes[j++]);
            }
        }
        return result.ToArray();
    }

    private static bool IsSortedAndUnique(KeyValuePair<ulong, AffinityEntry>[] sessions)
    {
        for (var i = 1; i < sessions.Length; i++)
        {
            if (sessions[i - 1].Key >= sessions[i].Key)
            {
                return false;
            }
        }
        return true;
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
    public AffinityBucket ResetDelta() => _delta is null ? this : new AffinityBucket(_sessions, Capacity, null, _ancestor);

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
        for (var i = 0; i < _sessions.Length; i++)
        {
            if (_sessions[i].Key != other._sessions[i].Key || _sessions[i].Value != other._sessions[i].Value)
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

/// <summary>The sessions of an <see cref="AffinityBucket"/>: session hash → entry, in hash order, read without copying.</summary>
public readonly struct BucketSessions : IReadOnlyDictionary<ulong, AffinityEntry>
{
    private readonly KeyValuePair<ulong, AffinityEntry>[] _sessions;

    internal BucketSessions(KeyValuePair<ulong, AffinityEntry>[] sessions) => _sessions = sessions;

    /// <summary>The sessions as one span, in hash order.</summary>
    public ReadOnlySpan<KeyValuePair<ulong, AffinityEntry>> AsSpan() => _sessions;

    /// <inheritdoc />
    public int Count => _sessions.Length;

    /// <summary>True when there are no sessions.</summary>
    public bool IsEmpty => _sessions.Length == 0;

    /// <inheritdoc />
    public AffinityEntry this[ulong key] => TryGetValue(key, out var entry) ? entry : throw new KeyNotFoundException($"no session {key}");

    /// <inheritdoc />
    public IEnumerable<ulong> Keys => _sessions.Select(s => s.Key);

    /// <inheritdoc />
    public IEnumerable<AffinityEntry> Values => _sessions.Select(s => s.Value);

    /// <inheritdoc />
    public bool ContainsKey(ulong key) => IndexOf(key) >= 0;

    /// <inheritdoc />
    public bool TryGetValue(ulong key, [MaybeNullWhen(false)] out AffinityEntry value)
    {
        var index = IndexOf(key);
        value = index >= 0 ? _sessions[index].Value : default;
        return index >= 0;
    }

    private int IndexOf(ulong key)
    {
        int low = 0, high = _sessions.Length - 1;
        while (low <= high)
        {
            var middle = low + ((high - low) >> 1);
            var found = _sessions[middle].Key;
            if (found == key)
            {
                return middle;
            }
            if (found < key)
            {
                low = middle + 1;
            }
            else
            {
                high = middle - 1;
            }
        }
        return -1;
    }

    /// <summary>Enumerates the sessions in hash order without allocating.</summary>
    public ArraySegment<KeyValuePair<ulong, AffinityEntry>>.Enumerator GetEnumerator() => new ArraySegment<KeyValuePair<ulong, AffinityEntry>>(_sessions).GetEnumerator();

    IEnumerator<KeyValuePair<ulong, AffinityEntry>> IEnumerable<KeyValuePair<ulong, AffinityEntry>>.GetEnumerator() => ((IEnumerable<KeyValuePair<ulong, AffinityEntry>>)_sessions).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => _sessions.GetEnumerator();
}
