using System.Net;
using Balancer.Configuration;
using Microsoft.AspNetCore.Http;

namespace Balancer.Routing;

/// <summary>What the algorithms may look at to pick a backend: the client address and, for HTTP, the request.</summary>
public readonly struct RoutingRequest
{
    /// <summary>A request from <paramref name="clientAddress"/>; <paramref name="http"/> is null on TCP frontends.</summary>
    public RoutingRequest(IPAddress? clientAddress, HttpContext? http = null)
    {
        ClientAddress = clientAddress;
        Http = http;
    }

    /// <summary>The client's IP address, when known.</summary>
    public IPAddress? ClientAddress { get; }

    /// <summary>The HTTP request, or null for a TCP connection.</summary>
    public HttpContext? Http { get; }

    /// <summary>
    /// Hashes the part of the request named by <paramref name="key"/>; false when the request does
    /// not carry it (no such header or cookie, or a TCP connection asked for an HTTP key).
    /// </summary>
    public bool TryHash(HashKey key, out ulong hash)
    {
        hash = 0;
        switch (key.Source)
        {
            case HashKeySource.SourceIp:
                if (ClientAddress is null)
                {
                    return false;
                }
                Span<byte> bytes = stackalloc byte[16];
                if (!ClientAddress.TryWriteBytes(bytes, out var written))
                {
                    return false;
                }
                hash = KeyHash.Of(bytes[..written]);
                return true;
            case HashKeySource.Header:
                if (Http is null)
                {
                    return false;
                }
                var header = Http.Request.Headers[key.Name];
                if (header.Count == 0 || string.IsNullOrEmpty(header[0]))
                {
                    return false;
                }
                hash = KeyHash.Of(header[0]);
                return true;
            case HashKeySource.Cookie:
                if (Http is null || !Http.Request.Cookies.TryGetValue(key.Name, out var cookie) || string.IsNullOrEmpty(cookie))
                {
                    return false;
                }
                hash = KeyHash.Of(cookie);
                return true;
            case HashKeySource.Path:
                if (Http is null)
                {
                    return false;
                }
                hash = KeyHash.Of(Http.Request.Path.Value ?? "/");
                return true;
            default:
                return false;
        }
    }
}

/// <summary>
/// The 64-bit hash used for hash keys, ring points and Maglev permutations: FNV-1a over the input,
/// finished with a strong mixer so that similar keys (IPs in one subnet, "a-1", "a-2") spread evenly.
/// Stable across processes and nodes, unlike <see cref="string.GetHashCode()"/>.
/// </summary>
public static class KeyHash
{
    private const ulong OffsetBasis = 14695981039346656037UL;
    private const ulong Prime = 1099511628211UL;

    /// <summary>Hashes bytes.</summary>
    public static ulong Of(ReadOnlySpan<byte> data, ulong seed = 0)
    {
        var hash = OffsetBasis ^ seed;
        foreach (var b in data)
        {
            hash = (hash ^ b) * Prime;
        }
        return Mix(hash);
    }

    /// <summary>Hashes the UTF-16 code units of a string.</summary>
    public static ulong Of(ReadOnlySpan<char> text, ulong seed = 0)
    {
        var hash = OffsetBasis ^ seed;
        foreach (var c in text)
        {
            hash = (hash ^ (byte)c) * Prime;
            hash = (hash ^ (byte)(c >> 8)) * Prime;
        }
        return Mix(hash);
    }

    /// <summary>Hashes a string with a number appended (ring points, permutations) without allocating.</summary>
    public static ulong Of(string text, int number, ulong seed = 0)
    {
        Span<char> buffer = stackalloc char[text.Length + 12];
        text.AsSpan().CopyTo(buffer);
        buffer[text.Length] = '#';
        number.TryFormat(buffer[(text.Length + 1)..], out var written);
        return Of(buffer[..(text.Length + 1 + written)], seed);
    }

    private static ulong Mix(ulong k)
    {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdUL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53UL;
        k ^= k >> 33;
        return k;
    }
}
