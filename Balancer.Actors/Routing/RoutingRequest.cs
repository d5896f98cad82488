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
        _fields = null;
    }

    /// <summary>A request the HTTP/1.1 fast path read itself, without an <see cref="HttpContext"/>.</summary>
    internal RoutingRequest(IPAddress? clientAddress, IRequestFields fields)
    {
        ClientAddress = clientAddress;
        Http = null;
        _fields = fields;
    }

    private readonly IRequestFields? _fields;

    /// <summary>The client's IP address, when known.</summary>
    public IPAddress? ClientAddress { get; }

    /// <summary>The HTTP request, or null for a TCP connection (and for a request of the HTTP/1.1 fast path).</summary>
    public HttpContext? Http { get; }

    /// <summary>The first value of a request header, or null (also for a TCP connection).</summary>
    internal string? Header(string name)
    {
        if (_fields is not null)
        {
            return _fields.Header(name);
        }
        if (Http is null)
        {
            return null;
        }
        var header = Http.Request.Headers[name];
        return header.Count == 0 ? null : header[0];
    }

    /// <summary>The value of a request cookie, or null (also for a TCP connection).</summary>
    internal string? Cookie(string name) =>
        _fields is not null ? _fields.Cookie(name)
        : Http is not null && Http.Request.Cookies.TryGetValue(name, out var cookie) ? cookie
        : null;

    /// <summary>The request's path, or null for a TCP connection.</summary>
    internal string? Path => _fields is not null ? _fields.Path : Http is null ? null : Http.Request.Path.Value ?? "/";

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
                if (Header(key.Name) is not { Length: > 0 } header)
                {
                    return false;
                }
                hash = KeyHash.Of(header);
                return true;
            case HashKeySource.Cookie:
                if (Cookie(key.Name) is not { Length: > 0 } cookie)
                {
                    return false;
                }
                hash = KeyHash.Of(cookie);
                return true;
            case HashKeySource.Path:
                if (Path is not { } path)
                {
                    return false;
                }
                hash = KeyHash.Of(path);
                return true;
            default:
                return false;
        }
    }
}

/// <summary>What routing reads of an HTTP request that has no <see cref="HttpContext"/>.</summary>
internal interface IRequestFields
{
    /// <summary>The first value of header <paramref name="name"/>, or null.</summary>
    string? Header(string name);

    /// <summary>The value of cookie <paramref name="name"/>, or null.</summary>
    string? Cookie(string name);

    /// <summary>The path, decoded.</summary>
    string Path { get; }
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
