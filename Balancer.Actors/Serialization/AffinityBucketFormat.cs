using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.Serialization;
using System.Text;
using Balancer.Affinity;

namespace Balancer.Serialization;

/// <summary>
/// The wire form of an <see cref="AffinityBucket"/> (manifest <c>affinity-bucket/2</c>): its capacity,
/// the bucket's backend names once, then each session in hash order as [hash][backend index][expiry]
/// [flags], 18 bytes a session. The same sessions always give the same bytes, because the replicator
/// compares buckets by a digest of them.
/// <code>
/// varint  capacity
/// varint  backend-count,  backend-count × (varint length, UTF-8 name)
/// varint  entry-count,    entry-count × (uint64 LE hash, varint backend index, int64 LE expiry in Unix ms, byte flags: 1 established, 2 provisional)
/// </code>
/// </summary>
internal static class AffinityBucketFormat
{
    /// <summary>Longer backend names are refused on read.</summary>
    private const int MaxStringBytes = 4096;

    private const byte Established = 1;
    private const byte Provisional = 2;

    /// <summary>The bytes one session takes with a one-byte backend index: what sizes buckets against the remoting frame.</summary>
    public const int EntryBytes = 18;

    public static byte[] Write(AffinityBucket bucket)
    {
        var backends = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (_, entry) in bucket.Entries)
        {
            backends.TryAdd(entry.Backend, backends.Count);
        }
        var buffer = new ArrayBufferWriter<byte>(64 + bucket.Count * (EntryBytes + 1));
        WriteVarint(buffer, (uint)bucket.Capacity);
        WriteVarint(buffer, (uint)backends.Count);
        foreach (var (name, _) in backends.OrderBy(b => b.Value))
        {
            WriteString(buffer, name);
        }
        WriteVarint(buffer, (uint)bucket.Count);
        foreach (var (hash, entry) in bucket.Entries)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(buffer.GetSpan(8), hash);
            buffer.Advance(8);
            WriteVarint(buffer, (uint)backends[entry.Backend]);
            var span = buffer.GetSpan(9);
            BinaryPrimitives.WriteInt64LittleEndian(span, entry.ExpiresAt.ToUnixTimeMilliseconds());
            span[8] = (byte)((entry.Established ? Established : 0) | (entry.Provisional ? Provisional : 0));
            buffer.Advance(9);
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static AffinityBucket Read(byte[] bytes)
    {
        var reader = new Reader(bytes);
        var capacity = reader.Varint();
        if (capacity > int.MaxValue)
        {
            throw Malformed($"capacity {capacity}");
        }
        var backendCount = reader.Count(minimumBytesEach: 1);
        var backends = new string[backendCount];
        for (var i = 0; i < backendCount; i++)
        {
            backends[i] = reader.String();
        }
        var entryCount = reader.Count(minimumBytesEach: EntryBytes);
        var entries = new KeyValuePair<ulong, AffinityEntry>[entryCount];
        for (var i = 0; i < entryCount; i++)
        {
            var hash = reader.UInt64();
            if (i > 0 && entries[i - 1].Key >= hash)
            {
                throw Malformed($"entry {i} is out of hash order");
            }
            var backend = reader.Varint();
            if (backend >= backendCount)
            {
                throw Malformed($"entry {i} names backend {backend} of {backendCount}");
            }
            var expiresAt = (long)reader.UInt64();
            if (expiresAt < 0 || expiresAt > AffinityEntry.MaxExpiryUnixMilliseconds)
            {
                throw Malformed($"entry {i} expires at {expiresAt}");
            }
            var flags = reader.Byte();
            if ((flags & ~(Established | Provisional)) != 0)
            {
                throw Malformed($"entry {i} has unknown flags {flags}");
            }
            entries[i] = new(hash, new AffinityEntry(backends[backend], DateTimeOffset.FromUnixTimeMilliseconds(expiresAt), (flags & Established) != 0, (flags & Provisional) != 0));
        }
        if (!reader.AtEnd)
        {
            throw Malformed($"{bytes.Length - reader.Position} bytes after the last entry");
        }
        return AffinityBucket.OfSorted(entries, (int)capacity);
    }

    private static void WriteVarint(ArrayBufferWriter<byte> buffer, uint value)
    {
        var span = buffer.GetSpan(5);
        var written = 0;
        while (value >= 0x80)
        {
            span[written++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[written++] = (byte)value;
        buffer.Advance(written);
    }

    private static void WriteString(ArrayBufferWriter<byte> buffer, string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        WriteVarint(buffer, (uint)length);
        Encoding.UTF8.GetBytes(value, buffer.GetSpan(length));
        buffer.Advance(length);
    }

    private static SerializationException Malformed(string what) =>
        new($"malformed {BalancerSerializer.AffinityBucketManifest} payload: {what}");

    private ref struct Reader(byte[] bytes)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;

        public int Position { get; private set; }

        public readonly bool AtEnd => Position == _bytes.Length;

        public uint Varint()
        {
            uint value = 0;
            for (var shift = 0; shift < 35; shift += 7)
            {
                if (Position >= _bytes.Length)
                {
                    throw Malformed($"truncated at byte {Position}");
                }
                var b = _bytes[Position++];
                value |= (uint)(b & 0x7f) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }
            throw Malformed($"overlong number at byte {Position}");
        }

        /// <summary>A count that the remaining bytes can hold, so a hostile count allocates nothing large.</summary>
        public int Count(int minimumBytesEach)
        {
            var count = Varint();
            if (count > (uint)((_bytes.Length - Position) / minimumBytesEach + 1))
            {
                throw Malformed($"count {count} exceeds what {_bytes.Length - Position} remaining bytes can hold");
            }
            return (int)count;
        }

        public string String()
        {
            var length = Varint();
            if (length > MaxStringBytes || length > _bytes.Length - Position)
            {
                throw Malformed($"string of {length} bytes at byte {Position}");
            }
            var value = Encoding.UTF8.GetString(_bytes.Slice(Position, (int)length));
            Position += (int)length;
            return value;
        }

        public ulong UInt64()
        {
            if (_bytes.Length - Position < 8)
            {
                throw Malformed($"truncated at byte {Position}");
            }
            var value = BinaryPrimitives.ReadUInt64LittleEndian(_bytes.Slice(Position));
            Position += 8;
            return value;
        }

        public byte Byte()
        {
            if (Position >= _bytes.Length)
            {
                throw Malformed($"truncated at byte {Position}");
            }
            return _bytes[Position++];
        }
    }
}
