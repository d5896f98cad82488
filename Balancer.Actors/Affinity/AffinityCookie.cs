using System.Security.Cryptography;
using System.Text;

namespace Balancer.Affinity;

/// <summary>
/// The cookie of <c>affinity.mode = cookie</c>: "BACKEND.EXPIRES.MAC" where EXPIRES is when the
/// session ends (Unix seconds, <c>affinity.ttl</c> after the cookie was issued) and MAC a truncated
/// HMAC-SHA256 of pool, backend and expiry under the cluster-wide <c>balancer.node.affinity-key</c>
/// (or, when that is empty, a key one node generated, replicated and keeps durable), so a client can
/// neither pick a backend nor keep a session past its end by editing or replaying it, and every node
/// checks it without any table.
/// </summary>
public sealed class AffinityCookie
{
    private const int MacBytes = 12;
    private readonly string _pool;
    private readonly AffinityKey _key;
    private readonly TimeSpan _lifetime;
    private readonly Func<DateTimeOffset> _now;

    /// <summary>Cookies of <paramref name="pool"/> under <paramref name="key"/>, each valid for <paramref name="lifetime"/> by the clock <paramref name="now"/>.</summary>
    public AffinityCookie(AffinityKey key, string pool, TimeSpan lifetime, Func<DateTimeOffset> now)
    {
        _key = key;
        _pool = pool;
        _lifetime = lifetime;
        _now = now;
    }

    /// <summary>True once there is a key to sign and check cookies with.</summary>
    public bool HasKey => _key.Value is not null;

    /// <summary>The cookie value naming <paramref name="backend"/>, or null while no key is known.</summary>
    public string? Issue(string backend)
    {
        if (!HasKey)
        {
            return null;
        }
        var expires = (_now() + _lifetime).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        return $"{backend}.{expires}.{Mac(backend, expires)}";
    }

    /// <summary>The backend a cookie names, or null when it is malformed, expired or its MAC does not match.</summary>
    public string? Verify(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 200 || !HasKey)
        {
            return null;
        }
        var macDot = value.LastIndexOf('.');
        var expiresDot = macDot > 0 ? value.LastIndexOf('.', macDot - 1) : -1;
        if (expiresDot <= 0)
        {
            return null;
        }
        var backend = value[..expiresDot];
        var expires = value[(expiresDot + 1)..macDot];
        var expected = Encoding.ASCII.GetBytes(Mac(backend, expires));
        var given = Encoding.ASCII.GetBytes(value[(macDot + 1)..]);
        if (!CryptographicOperations.FixedTimeEquals(expected, given))
        {
            return null;
        }
        return long.TryParse(expires, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
               && seconds > _now().ToUnixTimeSeconds()
            ? backend
            : null;
    }

    private string Mac(string backend, string expires)
    {
        var mac = HMACSHA256.HashData(_key.Value!, Encoding.UTF8.GetBytes(_pool + "\n" + backend + "\n" + expires));
        return Convert.ToBase64String(mac, 0, MacBytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
