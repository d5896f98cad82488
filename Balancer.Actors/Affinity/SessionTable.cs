namespace Balancer.Affinity;

/// <summary>
/// The data plane's cache of one pool's sessions: session hash → <see cref="AffinityEntry"/> in one
/// open-addressing array of 16-byte slots (the hash, and one word holding the expiry, the backend's
/// index in a table of names and both flags), with no object per session. Lookups take no lock and
/// allocate nothing: a reader works on one generation (slots and names), which writers replace
/// whole when the array grows. Writes (a new session, its refresh once per quarter of its TTL, what
/// replication brings) take one short lock.
/// </summary>
internal sealed class SessionTable
{
    private struct Slot
    {
        public ulong Hash;
        public long Value;
    }

    // Value: 0 in a slot never used; Removed for a session forgotten (its slot is kept for that hash
    // until the array is rebuilt, so that lookups probing past it still find what follows);
    // otherwise positive: expiry in Unix ms (47 bits, up to year 6429), backend index, flags.
    private const long Removed = long.MinValue;
    private const long ExpiryMask = (1L << 47) - 1;
    private const int BackendShift = 47;
    private const int BackendBits = 14;
    private const int MaxBackends = 1 << BackendBits;
    private const long EstablishedBit = 1L << 61;
    private const long ProvisionalBit = 1L << 62;
    // The array grows (to 1/MinLoad of the sessions held) once used slots, forgotten ones included,
    // would pass MaxLoad of it.
    private const double MaxLoad = 0.8;
    private const double MinLoad = 0.6;

    private sealed class Generation(Slot[] slots, string[] backends)
    {
        public readonly Slot[] Slots = slots;

        // Appended to (a new generation sharing the slots) when a session names a backend first.
        public readonly string[] Backends = backends;
    }

    private readonly Lock _gate = new();
    private volatile Generation _current = new(new Slot[16], []);
    private readonly Dictionary<string, int> _backendIndex = new(StringComparer.Ordinal);
    private int _count;
    private int _used;

    /// <summary>The sessions held, expired ones included until they are forgotten.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>The entry of <paramref name="hash"/>, expired or not; lock-free.</summary>
    public bool TryGetValue(ulong hash, out AffinityEntry entry)
    {
        var generation = _current;
        var value = Find(generation.Slots, hash);
        if (value <= 0)
        {
            entry = default;
            return false;
        }
        var backend = (int)((value >> BackendShift) & (MaxBackends - 1));
        var backends = generation.Backends;
        // A writer appended this backend's name to a newer generation that shares these slots.
        while (backend >= backends.Length)
        {
            backends = _current.Backends;
        }
        entry = Decode(value, backends[backend]);
        return true;
    }

    /// <summary>Sets the entry of <paramref name="hash"/>; false when the table already names the most backends it can (it refuses the pin).</summary>
    public bool Set(ulong hash, AffinityEntry entry)
    {
        lock (_gate)
        {
            return SetHeld(hash, entry);
        }
    }

    /// <summary>
    /// Replaces the entry of <paramref name="hash"/> with what <paramref name="update"/> makes of the
    /// one held (null when none), under the writers' lock; returns what it made.
    /// </summary>
    public AffinityEntry? Update(ulong hash, Func<AffinityEntry?, AffinityEntry?> update)
    {
        lock (_gate)
        {
            AffinityEntry? held = TryGetValue(hash, out var entry) ? entry : null;
            var made = update(held);
            if (made is { } replacement && held != made)
            {
                SetHeld(hash, replacement);
            }
            return made;
        }
    }

    /// <summary>Forgets <paramref name="hash"/>, only while it holds <paramref name="expected"/> when one is given; true when it did.</summary>
    public bool Remove(ulong hash, AffinityEntry? expected = null)
    {
        lock (_gate)
        {
            var slots = _current.Slots;
            var index = IndexOf(slots, hash);
            if (index < 0 || slots[index].Value <= 0)
            {
                return false;
            }
            if (expected is { } wanted && Decode(slots[index].Value, _current.Backends) != wanted)
            {
                return false;
            }
            Volatile.Write(ref slots[index].Value, Removed);
            _count--;
            return true;
        }
    }

    /// <summary>Every entry held (expired ones included), as of one moment; lock-free.</summary>
    public List<KeyValuePair<ulong, AffinityEntry>> ToList(Func<AffinityEntry, bool>? where = null)
    {
        var generation = _current;
        var backends = generation.Backends;
        var list = new List<KeyValuePair<ulong, AffinityEntry>>();
        foreach (ref readonly var slot in generation.Slots.AsSpan())
        {
            var value = Volatile.Read(in slot.Value);
            if (value <= 0)
            {
                continue;
            }
            var backend = (int)((value >> BackendShift) & (MaxBackends - 1));
            while (backend >= backends.Length)
            {
                backends = _current.Backends;
            }
            var entry = Decode(value, backends[backend]);
            if (where is null || where(entry))
            {
                list.Add(new(slot.Hash, entry));
            }
        }
        return list;
    }

    /// <summary>The bytes the table's arrays take (what a session costs this node's data plane).</summary>
    public long Bytes => (long)_current.Slots.Length * 16;

    private bool SetHeld(ulong hash, AffinityEntry entry)
    {
        // Growing first: a rebuild renumbers the backends, so the index is taken after it.
        if (IndexOf(_current.Slots, hash) < 0 && _used + 1 > _current.Slots.Length * MaxLoad)
        {
            Rebuild((int)Math.Max(16, (_count + 1) / MinLoad));
        }
        if (!_backendIndex.TryGetValue(entry.Backend, out var backend))
        {
            if (_backendIndex.Count == MaxBackends)
            {
                // Names of backends no session holds any more are dropped by a rebuild.
                Rebuild(_current.Slots.Length);
                if (_backendIndex.Count == MaxBackends)
                {
                    return false;
                }
            }
            backend = _backendIndex.Count;
            _backendIndex[entry.Backend] = backend;
            _current = new Generation(_current.Slots, [.. _current.Backends, entry.Backend]);
        }
        var value = Math.Clamp(entry.ExpiresAtUnixMilliseconds, 1, ExpiryMask) | ((long)backend << BackendShift)
            | (entry.Established ? EstablishedBit : 0) | (entry.Provisional ? ProvisionalBit : 0);
        var slots = _current.Slots;
        var index = IndexOf(slots, hash);
        if (index >= 0)
        {
            if (slots[index].Value <= 0)
            {
                _count++;
            }
            Volatile.Write(ref slots[index].Value, value);
            return true;
        }
        index = FreeSlotOf(slots, hash);
        // The hash first: a reader that finds it before its value takes the session for one still
        // being written (absent), never another session's value.
        Volatile.Write(ref slots[index].Hash, hash);
        Volatile.Write(ref slots[index].Value, value);
        _used++;
        _count++;
        return true;
    }

    // Copies the live sessions into a new array of `length` slots, naming only the backends they hold.
    private void Rebuild(int length)
    {
        var old = _current;
        var slots = new Slot[length];
        var remap = new int[old.Backends.Length];
        Array.Fill(remap, -1);
        var backends = new List<string>();
        _backendIndex.Clear();
        foreach (ref readonly var slot in old.Slots.AsSpan())
        {
            if (slot.Value <= 0)
            {
                continue;
            }
            var backend = (int)((slot.Value >> BackendShift) & (MaxBackends - 1));
            if (remap[backend] < 0)
            {
                remap[backend] = backends.Count;
                _backendIndex[old.Backends[backend]] = backends.Count;
                backends.Add(old.Backends[backend]);
            }
            var index = FreeSlotOf(slots, slot.Hash);
            slots[index].Hash = slot.Hash;
            slots[index].Value = (slot.Value & ~((long)(MaxBackends - 1) << BackendShift)) | ((long)remap[backend] << BackendShift);
        }
        _used = _count;
        _current = new Generation(slots, [.. backends]);
    }

    private static AffinityEntry Decode(long value, string backend) =>
        new(backend, value & ExpiryMask, (value & EstablishedBit) != 0, (value & ProvisionalBit) != 0);

    // Writers only (under the lock): their generation names every backend its slots hold.
    private static AffinityEntry Decode(long value, string[] backends) =>
        Decode(value, backends[(int)((value >> BackendShift) & (MaxBackends - 1))]);

    // Hashes are SipHash outputs, already uniform: the high word of hash × length spreads them over
    // any length, which lets the array grow by less than doubling.
    private static int Home(ulong hash, int length) => (int)Math.BigMul(hash, (ulong)length, out _);

    /// <summary>The value held for <paramref name="hash"/>: positive when live, 0 or <see cref="Removed"/> when absent.</summary>
    private static long Find(Slot[] slots, ulong hash)
    {
        var index = Home(hash, slots.Length);
        while (true)
        {
            var found = Volatile.Read(ref slots[index].Hash);
            var value = Volatile.Read(ref slots[index].Value);
            if (found == hash && (hash != 0 || value != 0))
            {
                return value;
            }
            if (found == 0 && value == 0)
            {
                return 0;
            }
            if (++index == slots.Length)
            {
                index = 0;
            }
        }
    }

    // The slot of `hash` (live or forgotten), or -1. Writers only (under the lock).
    private static int IndexOf(Slot[] slots, ulong hash)
    {
        var index = Home(hash, slots.Length);
        while (true)
        {
            ref var slot = ref slots[index];
            if (slot.Hash == hash && (hash != 0 || slot.Value != 0))
            {
                return index;
            }
            if (slot.Hash == 0 && slot.Value == 0)
            {
                return -1;
            }
            if (++index == slots.Length)
            {
                index = 0;
            }
        }
    }

    // The first never-used slot on `hash`'s probe sequence (the table is never full).
    private static int FreeSlotOf(Slot[] slots, ulong hash)
    {
        var index = Home(hash, slots.Length);
        while (slots[index].Hash != 0 || slots[index].Value != 0)
        {
            if (++index == slots.Length)
            {
                index = 0;
            }
        }
        return index;
    }
}
