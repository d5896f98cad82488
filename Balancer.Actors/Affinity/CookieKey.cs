using System.Text;

namespace Balancer.Affinity;

/// <summary>
/// The key that signs affinity cookies: <c>balancer.node.affinity-key</c>, or, when that is empty,
/// the key one node generated and replicated, once it arrives (<see cref="AffinityKeyKeeper"/>).
/// One per node, shared by the cookies of every pool.
/// </summary>
public sealed class CookieKey
{
    private byte[]? _value;

    /// <summary>The configured key; empty: none until the replicated one arrives.</summary>
    public CookieKey(string configured)
    {
        _value = configured.Length > 0 ? Encoding.UTF8.GetBytes(configured) : null;
    }

    /// <summary>The key's bytes, or null while none is known.</summary>
    public byte[]? Value => Volatile.Read(ref _value);

    /// <summary>Sets the cluster's generated key (from the replicated register).</summary>
    internal void Set(string key) => Volatile.Write(ref _value, Encoding.UTF8.GetBytes(key));
}
