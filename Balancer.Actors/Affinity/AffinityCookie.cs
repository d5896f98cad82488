using System.Security.Cryptography;
using System.Text;

namespace Balancer.Affinity;

/// <summary>
/// The cookie of <c>affinity.mode = cookie</c>: "BACKEND.MAC" where MAC is a truncated
/// HMAC-SHA256 of pool and backend under the cluster-wide <c>balancer.node.affinity-key</c>, so a
/// client cannot pick a backend by editing it and every node can check it without any table.
/// </summary>
public sealed class AffinityCookie
{
    private const int MacBytes = 12;
    private readonly byte[] _key;
    private readonly string _pool;

    /// <summary>Cookies of <paramref name="pool"/> under <paramref name="key"/>.</summary>
    public AffinityCookie(string key, string pool)
    {
        _key = Encoding.UTF8.GetBytes(key);
        _pool = pool;
    }

    /// <summary>The cookie value naming <paramref name="backend"/>.</summary>
    public string Issue(string backend) => backend + "." + Mac(backend);

    /// <summary>The backend a cookie names, or null when it is malformed or its MAC does not match.</summary>
    public string? Verify(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 200)
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
        var mac = HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(_pool + "\n" + backend));
        return Convert.ToBase64String(mac, 0, MacBytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
