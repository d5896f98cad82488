using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Balancer.Affinity;

/// <summary>
/// The cluster's affinity key: <c>balancer.node.affinity-key</c>, or, when that is empty, the key
/// one node generated and replicated, once it arrives (<see cref="AffinityKeyKeeper"/>). It signs
/// affinity cookies, and keys the hash under which every other session is stored
/// (<see cref="SessionHash"/>), so that nobody without it can make two session keys collide.
/// One per node, shared by every pool.
/// </summary>
public sealed class AffinityKey
{
    private Keys? _keys;

    /// <summary>The configured key; empty: none until the replicated one arrives.</summary>
    public AffinityKey(string configured)
    {
        _keys = configured.Length > 0 ? new Keys(Encoding.UTF8.GetBytes(configured)) : null;
    }

    /// <summary>The key's bytes, or null while none is known.</summary>
    public byte[]? Value => Volatile.Read(ref _keys)?.Value;

    /// <summary>The SipHash key of session keys (derived from the affinity key), or null while none is known.</summary>
    internal SessionHash? SessionHash => Volatile.Read(ref _keys)?.SessionHash;

    /// <summary>Sets the cluster's generated key (from the replicated register).</summary>
    internal void Set(string key) => Volatile.Write(ref _keys, new Keys(Encoding.UTF8.GetBytes(key)));

    /// <summary>A key and what is derived from it, replaced together so a reader never sees one without the other.</summary>
    private sealed class Keys(byte[] value)
    {
        public byte[] Value { get; } = value;

        // Its own key, so that a session hash reveals nothing about the MACs of cookies.
        public SessionHash SessionHash { get; } = new(HMACSHA256.HashData(value, "balancer session hash"u8)[..16]);
    }
}

/// <summary>
/// A session key as the affinity table stores and replicates it: SipHash-2-4 (the keyed hash
/// that hash tables use against collision flooding) of the key's UTF-16 code units. The table
/// never holds a key itself (a learned cookie is the backend's own session secret), and a record
/// of fixed size keeps a million sessions small. Two keys share a hash with probability about
/// n²/2⁶⁵ for n live sessions (3·10⁻⁸ for a million); the two sessions then share a backend.
/// </summary>
internal sealed class SessionHash
{
    private readonly ulong _k0;
    private readonly ulong _k1;

    /// <summary>SipHash-2-4 under the 16-byte <paramref name="key"/>.</summary>
    public SessionHash(ReadOnlySpan<byte> key)
    {
        _k0 = BinaryPrimitives.ReadUInt64LittleEndian(key);
        _k1 = BinaryPrimitives.ReadUInt64LittleEndian(key[8..]);
    }

    /// <summary>The hash of a session key.</summary>
    public ulong Of(string sessionKey) => Of(System.Runtime.InteropServices.MemoryMarshal.AsBytes(sessionKey.AsSpan()));

    /// <summary>SipHash-2-4 of <paramref name="data"/>.</summary>
    public ulong Of(ReadOnlySpan<byte> data)
    {
        var v0 = _k0 ^ 0x736f6d6570736575UL;
        var v1 = _k1 ^ 0x646f72616e646f6dUL;
        var v2 = _k0 ^ 0x6c7967656e657261UL;
        var v3 = _k1 ^ 0x7465646279746573UL;
        var whole = data.Length & ~7;
        for (var i = 0; i < whole; i += 8)
        {
            var m = BinaryPrimitives.ReadUInt64LittleEndian(data[i..]);
            v3 ^= m;
            Round(ref v0, ref v1, ref v2, ref v3);
            Round(ref v0, ref v1, ref v2, ref v3);
            v0 ^= m;
        }
        var last = (ulong)data.Length << 56;
        for (var i = whole; i < data.Length; i++)
        {
            last |= (ulong)data[i] << (8 * (i - whole));
        }
        v3 ^= last;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        v0 ^= last;
        v2 ^= 0xff;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        return v0 ^ v1 ^ v2 ^ v3;
    }

    private static void Round(ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
    {
        v0 += v1;
        v1 = ulong.RotateLeft(v1, 13);
        v1 ^= v0;
        v0 = ulong.RotateLeft(v0, 32);
        v2 += v3;
        v3 = ulong.RotateLeft(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = ulong.RotateLeft(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = ulong.RotateLeft(v1, 17);
        v1 ^= v2;
        v2 = ulong.RotateLeft(v2, 32);
    }
}
