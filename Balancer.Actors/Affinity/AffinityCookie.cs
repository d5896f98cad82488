using System.Security.Cryptography;
using System.Text;

namespace Balancer.Affinity;

/// <summary>
/// The cookie of <c>affinity.mode = cookie</c>: "BACKEND.MAC" where MAC is a truncated
/// HMAC-SHA256 of pool and backend under the cluster-wide <c>balancer.node.affinity-key</c> (or,
/// when that is empty, a key one node generated and replicated), so a client cannot pick a backend
/// by editing it and every node can check it without any table.
/// </summary>
public sealed class AffinityCookie
{
    private const int MacBytes = 12;
    private readonly string _pool;
    private readonly CookieKey _key;

    /// <summary>Cookies of <paramref name="pool"/> under <paramref name="key"/>.</summary>
    public AffinityCookie(CookieKey key, string pool)
    {
        _key = key;
        _pool = pool;
    }

    /// <summary>True once there is a key to sign and check cookies with.</summary>
    public bool HasKey => _key.Value is not null;

    /// <summary>The cookie value naming <paramref name="backend"/>, or null while no key is known.</summary>
    public string? Issue(string backend) => HasKey ? backend + "." + Mac(backend) : null;

    /// <summary>The backend a cookie names, or null when it is malformed or its MAC does not match.</summary>
    public string? Verify(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 200 || !HasKey)
        {
            return null;
        }
        var dot = value.LastIndexOf('.');
        if (dot <= 0)
        {
            return null;
        }
        var backend = value[..dot];
        var expected = Encoding.ASCII.GetBytes(Mac(backend));
        var given = Encoding.ASCII.GetBytes(value[(dot + 1)..]);
        return CryptographicOperations.FixedTimeEquals(expected, given) ? backend : null;
    }

    private string Mac(string backend)
    {
        var mac = HMACSHA256.HashData(_key.Value!, Encoding.UTF8.GetBytes(_pool + "\n" + backend));
        return Convert.ToBase64String(mac, 0, MacBytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
