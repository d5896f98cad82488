using System.Buffers;
using System.Text;
using Balancer.Routing;

namespace Balancer.Frontends.Http;

/// <summary>What a first look at a request's head says about it.</summary>
internal enum Http1HeadVerdict
{
    /// <summary>The head has not all arrived yet.</summary>
    Incomplete,
    /// <summary>A request in the one plain form the fast path forwards.</summary>
    Plain,
    /// <summary>Anything else (another version, a body in chunks, an upgrade, an unusual or invalid byte): Kestrel and YARP take it, and refuse what is invalid.</summary>
    NotPlain,
}

/// <summary>
/// The head of one HTTP/1.1 request as the fast path reads it. The fast path forwards only requests
/// in one plain form: <c>METHOD /origin-form HTTP/1.1</c>, one Host, a body framed by one
/// Content-Length of digits or none, header names of token characters and values of visible ASCII,
/// lines ended by CRLF. Everything else is <see cref="Http1HeadVerdict.NotPlain"/> and goes to
/// Kestrel unread, whose parser (tested by the smuggling corpus) refuses what is ambiguous: so the
/// fast path never has to decide how to frame a request two parsers could read differently.
/// One instance per client connection, read again for each request.
/// </summary>
internal sealed class Http1Request : IRequestFields
{
    private const byte CR = (byte)'\r';
    private const byte LF = (byte)'\n';

    private HeaderLine[] _lines = new HeaderLine[16];
    private byte[]? _copy;
    // How much of an incomplete head was already searched (for its end and for bare LFs): a head
    // arriving a byte at a time is searched once over, not once a byte.
    private long _searched;
    private string? _path;
    private string? _method;

    /// <summary>Where each header line's name and value are in <see cref="Head"/>.</summary>
    internal struct HeaderLine
    {
        public int NameStart;
        public int NameLength;
        public int ValueStart;
        public int ValueLength;
        public HeaderRole Role;
    }

    /// <summary>The headers the fast path treats apart from the others.</summary>
    internal enum HeaderRole : byte
    {
        Other,
        Host,
        ContentLength,
        /// <summary>Connection and Keep-Alive: about this hop only, not forwarded.</summary>
        Hop,
        /// <summary>How a previous hop described the client (X-Forwarded-*, Forwarded, X-Real-IP).</summary>
        Forwarding,
        ForwardedFor,
        ForwardedProto,
        ForwardedHost,
        /// <summary>Framing, upgrades, expectations and proxy headers: a request with one is not plain.</summary>
        NotPlain,
    }

    /// <summary>The head, request line to the empty line; valid until the bytes are released to the connection.</summary>
    public ReadOnlyMemory<byte> Head { get; private set; }

    public int MethodLength { get; private set; }

    public int TargetStart { get; private set; }

    public int TargetLength { get; private set; }

    /// <summary>The length of the path within the target (up to the query).</summary>
    public int PathLength { get; private set; }

    public int HostLine { get; private set; }

    /// <summary>The body's length; 0 without a body.</summary>
    public long ContentLength { get; private set; }

    /// <summary>The client asked for the connection to end after this request.</summary>
    public bool Close { get; private set; }

    public int LineCount { get; private set; }

    public ReadOnlySpan<HeaderLine> Lines => _lines.AsSpan(0, LineCount);

    /// <summary>A HEAD request: its response has no body whatever its head says. Read at parse time, as the head's bytes do not outlive the request's start.</summary>
    public bool IsHead { get; private set; }

    /// <summary>The method as a string (the usual ones without allocating).</summary>
    public string Method => _method ??= MethodString(Head.Span[..MethodLength]);

    /// <summary>The path as a string (a plain path is the same percent-decoded: it has no '%').</summary>
    public string Path => _path ??= Encoding.ASCII.GetString(Head.Span.Slice(TargetStart, PathLength));

    public ReadOnlySpan<byte> Target => Head.Span.Slice(TargetStart, TargetLength);

    public ReadOnlySpan<byte> Host => Value(_lines[HostLine]);

    public ReadOnlySpan<byte> Name(in HeaderLine line) => Head.Span.Slice(line.NameStart, line.NameLength);

    public ReadOnlySpan<byte> Value(in HeaderLine line) => Head.Span.Slice(line.ValueStart, line.ValueLength);

    /// <summary>
    /// Finds the head in <paramref name="buffer"/> and reads it. <paramref name="headLength"/> is the
    /// number of bytes it takes (the empty line included) when plain.
    /// </summary>
    public Http1HeadVerdict Read(in ReadOnlySequence<byte> buffer, Http1Limits limits, out int headLength)
    {
        headLength = 0;
        _path = null;
        _method = null;
        LineCount = 0;
        if (buffer.IsEmpty)
        {
            return Http1HeadVerdict.Incomplete;
        }
        // Not even the start of a method: a TLS handshake or a stray byte, for Kestrel to answer.
        if (buffer.FirstSpan[0] is < (byte)'A' or > (byte)'Z')
        {
            return Http1HeadVerdict.NotPlain;
        }
        var from = Math.Max(0, _searched - 3);
        var reader = new SequenceReader<byte>(buffer.Slice(from));
        if (!reader.TryReadTo(out ReadOnlySequence<byte> _, "\r\n\r\n"u8, advancePastDelimiter: true))
        {
            // A line ended by a bare LF would never complete a plain head: Kestrel reads it now.
            if (buffer.Length > limits.MaxHeadBytes || HasBareLineFeed(buffer.Slice(Math.Max(0, _searched - 1))))
            {
                _searched = 0;
                return Http1HeadVerdict.NotPlain;
            }
            _searched = buffer.Length;
            return Http1HeadVerdict.Incomplete;
        }
        _searched = 0;
        var length = from + reader.Consumed;
        if (length > limits.MaxHeadBytes)
        {
            return Http1HeadVerdict.NotPlain;
        }
        var head = buffer.Slice(0, length);
        if (head.IsSingleSegment)
        {
            Head = head.First;
        }
        else
        {
            if (_copy is null || _copy.Length < length)
            {
                _copy = new byte[Math.Max((int)length, 4096)];
            }
            head.CopyTo(_copy);
            Head = _copy.AsMemory(0, (int)length);
        }
        headLength = (int)length;
        return Parse(Head.Span, limits) ? Http1HeadVerdict.Plain : Http1HeadVerdict.NotPlain;
    }

    private bool HasBareLineFeed(in ReadOnlySequence<byte> buffer)
    {
        ReadOnlySpan<byte> bytes;
        if (buffer.IsSingleSegment)
        {
            bytes = buffer.FirstSpan;
        }
        else
        {
            if (_copy is null || _copy.Length < buffer.Length)
            {
                _copy = new byte[Math.Max((int)buffer.Length, 4096)];
            }
            buffer.CopyTo(_copy);
            bytes = _copy.AsSpan(0, (int)buffer.Length);
        }
        // The slice starts a byte before the new ones, so each LF has the byte before it.
        for (var i = bytes.IndexOf(LF); i >= 0; i = bytes[(i + 1)..].IndexOf(LF) is var next and >= 0 ? i + 1 + next : -1)
        {
            if (i == 0 ? _searched == 0 : bytes[i - 1] != CR)
            {
                return true;
            }
        }
        return false;
    }

    private bool Parse(ReadOnlySpan<byte> head, Http1Limits limits)
    {
        ContentLength = 0;
        Close = false;
        HostLine = -1;
        var lineEnd = head.IndexOf(LF);
        // Over a limit: Kestrel answers (414, 431).
        if (lineEnd < 1 || head[lineEnd - 1] != CR || lineEnd - 1 > limits.MaxRequestLineBytes || head.Length - lineEnd - 1 > limits.MaxHeaderBytes
            || !ParseRequestLine(head[..(lineEnd - 1)]))
        {
            return false;
        }
        var position = lineEnd + 1;
        var sawContentLength = false;
        while (true)
        {
            var rest = head[position..];
            var end = rest.IndexOf(LF);
            if (end < 1 || rest[end - 1] != CR)
            {
                return false;
            }
            if (end == 1)
            {
                break;
            }
            if (LineCount == limits.MaxHeaders)
            {
                return false;
            }
            var line = rest[..(end - 1)];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || !IsToken(line[..colon]))
            {
                // No name, a space before the colon, or a folded line (starting with white space).
                return false;
            }
            var (valueStart, valueEnd) = Http1Request.ValueOf(line, colon);
            var value = line[valueStart..valueEnd];
            if (!IsVisibleText(value))
            {
                return false;
            }
            var role = RoleOf(line[..colon]);
            switch (role)
            {
                case HeaderRole.Host:
                    if (HostLine >= 0 || !IsHost(value))
                    {
                        return false;
                    }
                    HostLine = LineCount;
                    break;
                case HeaderRole.ContentLength:
                    if (sawContentLength || !TryParseLength(value, out var contentLength))
                    {
                        return false;
                    }
                    sawContentLength = true;
                    ContentLength = contentLength;
                    break;
                case HeaderRole.Hop:
                    if (Ascii.EqualsIgnoreCase(line[..colon], "connection"u8) && !ReadConnection(value))
                    {
                        return false;
                    }
                    break;
                case HeaderRole.NotPlain:
                    // Framing, upgrades, expectations and proxy headers: Kestrel and YARP handle them.
                    return false;
            }
            if (LineCount == _lines.Length)
            {
                Array.Resize(ref _lines, _lines.Length * 2);
            }
            _lines[LineCount++] = new HeaderLine
            {
                NameStart = position,
                NameLength = colon,
                ValueStart = position + valueStart,
                ValueLength = valueEnd - valueStart,
                Role = role,
            };
            position += end + 1;
        }
        return HostLine >= 0;
    }

    /// <summary>Where a header line's value is: after the colon, without the white space around it.</summary>
    internal static (int Start, int End) ValueOf(ReadOnlySpan<byte> line, int colon)
    {
        var start = colon + 1;
        var end = line.Length;
        while (start < end && line[start] is (byte)' ' or (byte)'\t')
        {
            start++;
        }
        while (end > start && line[end - 1] is (byte)' ' or (byte)'\t')
        {
            end--;
        }
        return (start, end);
    }

    private bool ParseRequestLine(ReadOnlySpan<byte> line)
    {
        var method = 0;
        while (method < line.Length && line[method] is >= (byte)'A' and <= (byte)'Z')
        {
            method++;
        }
        // CONNECT turns the connection into a tunnel: Kestrel's (and it wants authority-form).
        if (method is 0 or > 16 || method >= line.Length || line[method] != (byte)' ' || line[..method].SequenceEqual("CONNECT"u8))
        {
            return false;
        }
        var target = line[(method + 1)..];
        var space = target.IndexOf((byte)' ');
        if (space <= 0 || !target[(space + 1)..].SequenceEqual("HTTP/1.1"u8) || target[0] != (byte)'/')
        {
            return false;
        }
        target = target[..space];
        var query = target.IndexOf((byte)'?');
        var path = query < 0 ? target : target[..query];
        // A '%' or a dot segment would make Kestrel's path (decoded, normalized) differ from the
        // bytes: routes must see the same path on both ways in.
        if (path.IndexOfAnyExcept(PathBytes) >= 0 || HasDotSegment(path)
            || (query >= 0 && target[(query + 1)..].IndexOfAnyExcept(QueryBytes) >= 0))
        {
            return false;
        }
        MethodLength = method;
        IsHead = line[..method].SequenceEqual("HEAD"u8);
        TargetStart = method + 1;
        TargetLength = space;
        PathLength = path.Length;
        return true;
    }

    private static bool HasDotSegment(ReadOnlySpan<byte> path)
    {
        for (var i = path.IndexOf("/."u8); i >= 0; i = path[(i + 1)..].IndexOf("/."u8) is var next and >= 0 ? i + 1 + next : -1)
        {
            var after = path[(i + 2)..];
            if (after.IsEmpty || after[0] == (byte)'/' || (after[0] == (byte)'.' && (after.Length == 1 || after[1] == (byte)'/')))
            {
                return true;
            }
        }
        return false;
    }

    private bool ReadConnection(ReadOnlySpan<byte> value)
    {
        // Only keep-alive and close: a Connection naming other headers (hop-by-hop ones to drop)
        // goes through YARP, which drops them.
        foreach (var range in value.Split((byte)','))
        {
            var token = value[range].Trim(" \t"u8);
            if (Ascii.EqualsIgnoreCase(token, "close"u8))
            {
                Close = true;
            }
            else if (!Ascii.EqualsIgnoreCase(token, "keep-alive"u8))
            {
                return false;
            }
        }
        return true;
    }

    internal static bool TryParseLength(ReadOnlySpan<byte> value, out long length)
    {
        length = 0;
        if (value.IsEmpty || value.Length > 18)
        {
            return false;
        }
        foreach (var b in value)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }
            length = length * 10 + (b - '0');
        }
        return true;
    }

    private static HeaderRole RoleOf(ReadOnlySpan<byte> name)
    {
        switch (name.Length)
        {
            case 2 when Ascii.EqualsIgnoreCase(name, "te"u8):
                return HeaderRole.NotPlain;
            case 4 when Ascii.EqualsIgnoreCase(name, "host"u8):
                return HeaderRole.Host;
            case 5 when Ascii.EqualsIgnoreCase(name, "close"u8):
            case 6 when Ascii.EqualsIgnoreCase(name, "expect"u8):
            case 7 when Ascii.EqualsIgnoreCase(name, "upgrade"u8):
            case 4 when Ascii.EqualsIgnoreCase(name, "alpn"u8):
                return HeaderRole.NotPlain;
            case 9 when Ascii.EqualsIgnoreCase(name, "forwarded"u8):
            case 9 when Ascii.EqualsIgnoreCase(name, "x-real-ip"u8):
                return HeaderRole.Forwarding;
            case 10 when Ascii.EqualsIgnoreCase(name, "connection"u8):
            case 10 when Ascii.EqualsIgnoreCase(name, "keep-alive"u8):
                return HeaderRole.Hop;
            case 14 when Ascii.EqualsIgnoreCase(name, "content-length"u8):
                return HeaderRole.ContentLength;
            case 13 when Ascii.EqualsIgnoreCase(name, "http2-settings"u8):
            case 15 when Ascii.EqualsIgnoreCase(name, "security-scheme"u8):
            case 17 when Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8):
            case 16 when Ascii.EqualsIgnoreCase(name, "x-content-length"u8):
                return HeaderRole.NotPlain;
            case 15 when Ascii.EqualsIgnoreCase(name, "x-forwarded-for"u8):
                return HeaderRole.ForwardedFor;
            case 17 when Ascii.EqualsIgnoreCase(name, "x-forwarded-proto"u8):
                return HeaderRole.ForwardedProto;
            case 16 when Ascii.EqualsIgnoreCase(name, "x-forwarded-host"u8):
                return HeaderRole.ForwardedHost;
            case 16 when Ascii.EqualsIgnoreCase(name, "x-forwarded-port"u8):
            case 18 when Ascii.EqualsIgnoreCase(name, "x-forwarded-prefix"u8):
                return HeaderRole.Forwarding;
        }
        // Proxy-Connection, Proxy-Authorization and the rest: YARP's to drop.
        return name.Length > 6 && Ascii.EqualsIgnoreCase(name[..6], "proxy-"u8) ? HeaderRole.NotPlain : HeaderRole.Other;
    }

    /// <summary>The first value of header <paramref name="name"/>, or null.</summary>
    public string? Header(string name)
    {
        foreach (ref readonly var line in Lines)
        {
            if (NameIs(line, name))
            {
                return Encoding.ASCII.GetString(Value(line));
            }
        }
        return null;
    }

    /// <summary>True when some value of header <paramref name="name"/> satisfies <paramref name="test"/>.</summary>
    public bool AnyValue<TState>(string name, TState state, Func<string, TState, bool> test)
    {
        foreach (ref readonly var line in Lines)
        {
            if (NameIs(line, name) && test(Encoding.ASCII.GetString(Value(line)), state))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>True when the request has a header <paramref name="name"/>.</summary>
    public bool Has(string name)
    {
        foreach (ref readonly var line in Lines)
        {
            if (NameIs(line, name))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The value of cookie <paramref name="name"/> in the Cookie headers, or null.</summary>
    public string? Cookie(string name)
    {
        foreach (ref readonly var line in Lines)
        {
            if (!NameIs(line, "cookie"))
            {
                continue;
            }
            var value = Value(line);
            foreach (var range in value.Split((byte)';'))
            {
                var pair = value[range].Trim((byte)' ');
                var equals = pair.IndexOf((byte)'=');
                if (equals > 0 && pair[..equals].Length == name.Length && Ascii.Equals(pair[..equals], name))
                {
                    // Percent-decoded, as ASP.NET Core's cookie collection gives it on YARP's way.
                    var text = Encoding.ASCII.GetString(pair[(equals + 1)..]);
                    return text.Contains('%') ? Uri.UnescapeDataString(text) : text;
                }
            }
        }
        return null;
    }

    private bool NameIs(in HeaderLine line, string name) =>
        line.NameLength == name.Length && Ascii.EqualsIgnoreCase(Name(line), name);

    private static string MethodString(ReadOnlySpan<byte> method) => method switch
    {
        _ when method.SequenceEqual("GET"u8) => "GET",
        _ when method.SequenceEqual("POST"u8) => "POST",
        _ when method.SequenceEqual("HEAD"u8) => "HEAD",
        _ when method.SequenceEqual("PUT"u8) => "PUT",
        _ when method.SequenceEqual("DELETE"u8) => "DELETE",
        _ when method.SequenceEqual("OPTIONS"u8) => "OPTIONS",
        _ when method.SequenceEqual("PATCH"u8) => "PATCH",
        _ => Encoding.ASCII.GetString(method),
    };

    private static bool IsToken(ReadOnlySpan<byte> name) => name.IndexOfAnyExcept(TokenBytes) < 0;

    /// <summary>Visible ASCII, space and tab: no control byte, no byte above 0x7E (Kestrel's default refuses those).</summary>
    private static bool IsVisibleText(ReadOnlySpan<byte> value) => value.IndexOfAnyExcept(TextBytes) < 0;

    /// <summary>A name (letters, digits, '-', '.', '_') or an [IPv6] literal, then an optional :port of digits.</summary>
    private static bool IsHost(ReadOnlySpan<byte> value)
    {
        ReadOnlySpan<byte> rest;
        if (value.StartsWith("["u8))
        {
            var close = value.IndexOf((byte)']');
            if (close < 3 || value[1..close].IndexOfAnyExcept(Ipv6Bytes) >= 0)
            {
                return false;
            }
            rest = value[(close + 1)..];
        }
        else
        {
            var colon = value.IndexOf((byte)':');
            var name = colon < 0 ? value : value[..colon];
            if (name.IsEmpty || name.IndexOfAnyExcept(NameBytes) >= 0)
            {
                return false;
            }
            rest = value[name.Length..];
        }
        return rest.IsEmpty || (rest[0] == (byte)':' && rest.Length is > 1 and <= 6 && rest[1..].IndexOfAnyExceptInRange((byte)'0', (byte)'9') < 0);
    }

    private static readonly SearchValues<byte> NameBytes = SearchValues.Create("-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    private static readonly SearchValues<byte> Ipv6Bytes = SearchValues.Create(":.0123456789ABCDEFabcdef"u8);

    internal static readonly SearchValues<byte> TokenBytes = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    // RFC 3986 pchar and '/', without '%': unreserved, sub-delims, ':' and '@'.
    private static readonly SearchValues<byte> PathBytes = SearchValues.Create("/-._~!$&'()*+,;=:@0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    private static readonly SearchValues<byte> QueryBytes = SearchValues.Create("/?%-._~!$&'()*+,;=:@0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    internal static readonly SearchValues<byte> TextBytes = SearchValues.Create(CreateText());

    private static byte[] CreateText()
    {
        var bytes = new List<byte> { (byte)'\t' };
        for (var b = 0x20; b <= 0x7E; b++)
        {
            bytes.Add((byte)b);
        }
        return bytes.ToArray();
    }
}

/// <summary>The frontend's limits on a request head, as Kestrel applies them.</summary>
internal sealed record Http1Limits(int MaxRequestLineBytes, int MaxHeaders, int MaxHeaderBytes)
{
    /// <summary>The most a head may take, request line and headers with their line ends.</summary>
    public int MaxHeadBytes => MaxRequestLineBytes + 2 + MaxHeaderBytes;
}
