using System.Buffers;
using System.Text;
using Balancer.Configuration;

namespace Balancer.Frontends.Http;

/// <summary>
/// The head of a backend's HTTP/1.x response as the fast path reads it, strictly: CRLF line ends,
/// token names, visible ASCII values, no folded lines, one framing (a body length, chunks, or the
/// connection's end; a length and chunks together, two different lengths or another transfer
/// coding are refused). Anything else is a 502 and the backend connection is not used again.
/// One instance per client connection.
/// </summary>
internal sealed class Http1Response
{
    private Line[] _lines = new Line[32];
    private int _lineCount;
    private int _reasonStart;
    private int _reasonLength;
    private int _connectionLine;
    private bool _hasDate;
    private bool _hadLength;

    public enum Verdict
    {
        Incomplete,
        Invalid,
        Complete,
    }

    public enum BodyFraming
    {
        None,
        Length,
        Chunked,
        UntilClose,
    }

    private enum Role : byte
    {
        Other,
        /// <summary>About the backend's connection only (Connection, Keep-Alive, Upgrade, Proxy-*, ...): not passed on.</summary>
        Hop,
        ContentLength,
        TransferEncoding,
        Date,
    }

    private struct Line
    {
        public int NameStart;
        public int NameLength;
        public int ValueStart;
        public int ValueLength;
        public Role Role;
    }

    public int Status { get; private set; }

    /// <summary>The bytes of the head, the empty line included.</summary>
    public int HeadLength { get; private set; }

    /// <summary>1xx before the answer (100 Continue, 103 Early Hints): read past, not passed on.</summary>
    public bool IsInterim => Status is >= 100 and < 200;

    public BodyFraming Framing { get; private set; }

    public long ContentLength { get; private set; }

    /// <summary>The backend keeps the connection open after this response.</summary>
    public bool Reusable { get; private set; }

    /// <summary>Reads a head from the start of <paramref name="bytes"/>.</summary>
    public Verdict Read(ReadOnlySpan<byte> bytes, bool toHeadRequest)
    {
        var end = bytes.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            return bytes.IndexOf("\n\n"u8) >= 0 || bytes.IndexOf("\n\r\n"u8) >= 0 ? Verdict.Invalid : Verdict.Incomplete;
        }
        var head = bytes[..(end + 4)];
        HeadLength = head.Length;
        _lineCount = 0;
        _hasDate = false;
        _hadLength = false;
        _connectionLine = -1;
        ContentLength = 0;
        // "HTTP/1.1 200 OK"
        var lineEnd = head.IndexOf("\r\n"u8);
        var statusLine = head[..lineEnd];
        if (statusLine.Length < 12 || !statusLine.StartsWith("HTTP/1."u8) || statusLine[7] is not ((byte)'0' or (byte)'1') || statusLine[8] != (byte)' '
            || !IsDigit(statusLine[9]) || !IsDigit(statusLine[10]) || !IsDigit(statusLine[11]) || (statusLine.Length > 12 && statusLine[12] != (byte)' '))
        {
            return Verdict.Invalid;
        }
        var http11 = statusLine[7] == (byte)'1';
        Status = (statusLine[9] - '0') * 100 + (statusLine[10] - '0') * 10 + (statusLine[11] - '0');
        if (Status is < 100 or > 599 || Status == 101)
        {
            // 101 Switching Protocols to a request that asked for no upgrade.
            return Verdict.Invalid;
        }
        _reasonStart = Math.Min(13, statusLine.Length);
        _reasonLength = statusLine.Length - _reasonStart;
        if (statusLine[_reasonStart..].IndexOfAnyExcept(Http1Request.TextBytes) >= 0)
        {
            // A control byte or a bare LF in the status line.
            return Verdict.Invalid;
        }
        var position = lineEnd + 2;
        var chunked = false;
        var close = !http11;
        while (position < head.Length - 2)
        {
            var rest = head[position..];
            var length = rest.IndexOf("\r\n"u8);
            // Every byte of the line is checked below: the name's as a token, the value's as text.
            var line = rest[..length];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || line[..colon].IndexOfAnyExcept(Http1Request.TokenBytes) >= 0)
            {
                return Verdict.Invalid;
            }
            var (valueStart, valueEnd) = Http1Request.ValueOf(line, colon);
            var value = line[valueStart..valueEnd];
            if (value.IndexOfAnyExcept(Http1Request.TextBytes) >= 0)
            {
                return Verdict.Invalid;
            }
            var name = line[..colon];
            var role = RoleOf(name);
            switch (role)
            {
                case Role.ContentLength:
                    if (!Http1Request.TryParseLength(value, out var contentLength) || (_hadLength && contentLength != ContentLength))
                    {
                        return Verdict.Invalid;
                    }
                    _hadLength = true;
                    ContentLength = contentLength;
                    break;
                case Role.TransferEncoding:
                    if (chunked || !Ascii.EqualsIgnoreCase(value, "chunked"u8))
                    {
                        return Verdict.Invalid;
                    }
                    chunked = true;
                    break;
                case Role.Date:
                    _hasDate = true;
                    break;
                case Role.Hop when name.Length == 10 && Ascii.EqualsIgnoreCase(name, "connection"u8):
                    foreach (var range in value.Split((byte)','))
                    {
                        var token = value[range].Trim(" \t"u8);
                        if (Ascii.EqualsIgnoreCase(token, "close"u8))
                        {
                            close = true;
                        }
                        else if (Ascii.EqualsIgnoreCase(token, "keep-alive"u8))
                        {
                            close = close && http11;
                        }
                    }
                    _connectionLine = _lineCount;
                    break;
            }
            if (_lineCount == _lines.Length)
            {
                Array.Resize(ref _lines, _lines.Length * 2);
            }
            _lines[_lineCount++] = new Line { NameStart = position, NameLength = colon, ValueStart = position + valueStart, ValueLength = valueEnd - valueStart, Role = role };
            position += length + 2;
        }
        if (chunked && _hadLength)
        {
            return Verdict.Invalid;
        }
        Framing = toHeadRequest || Status is 204 or 304 || IsInterim ? BodyFraming.None
            : chunked ? BodyFraming.Chunked
            : _hadLength ? BodyFraming.Length
            : BodyFraming.UntilClose;
        Reusable = !close && Framing != BodyFraming.UntilClose;
        return Verdict.Complete;
    }

    /// <summary>The most <see cref="WriteHead"/> writes: the head, a space more a line, the status line, Date, framing, Connection and the route's headers.</summary>
    public int MaxWrittenHeadLength(HeaderChanges changes)
    {
        var length = HeadLength + 2 * _lineCount + 256;
        foreach (var (name, value) in changes.Set)
        {
            length += name.Length + value.Length + 4;
        }
        return length;
    }

    /// <summary>
    /// Writes the head the client gets: the status line, the backend's headers without those about
    /// its connection (and those its Connection names), a Date when it sent none, the route's
    /// changes, this hop's framing.
    /// </summary>
    public void WriteHead(ref HeadWriter writer, ReadOnlySpan<byte> head, HeaderChanges changes, bool closing)
    {
        writer.Write("HTTP/1.1 "u8);
        writer.Write(head.Slice(9, 3));
        writer.Write(" "u8);
        if (_reasonLength > 0)
        {
            writer.Write(head.Slice(_reasonStart, _reasonLength));
        }
        else
        {
            writer.WriteAscii(Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(Status));
        }
        writer.Write("\r\n"u8);
        var named = _connectionLine >= 0 ? head.Slice(_lines[_connectionLine].ValueStart, _lines[_connectionLine].ValueLength) : default;
        for (var i = 0; i < _lineCount; i++)
        {
            ref readonly var line = ref _lines[i];
            if (line.Role is Role.Hop or Role.ContentLength or Role.TransferEncoding)
            {
                continue;
            }
            var name = head.Slice(line.NameStart, line.NameLength);
            if ((!named.IsEmpty && Names(named, name)) || (!changes.IsEmpty && changes.Changes(name)))
            {
                continue;
            }
            writer.Write(name);
            writer.Write(": "u8);
            writer.Write(head.Slice(line.ValueStart, line.ValueLength));
            writer.Write("\r\n"u8);
        }
        if (!_hasDate)
        {
            writer.Write(Http1Date.Header);
        }
        foreach (var (name, value) in changes.Set)
        {
            writer.WriteAscii(name);
            writer.Write(": "u8);
            writer.WriteAscii(value);
            writer.Write("\r\n"u8);
        }
        switch (Framing)
        {
            case BodyFraming.Length:
            case BodyFraming.None when _hadLength && Status != 204:
                writer.Write("Content-Length: "u8);
                writer.WriteNumber(ContentLength);
                writer.Write("\r\n"u8);
                break;
            case BodyFraming.Chunked:
            case BodyFraming.UntilClose:
                writer.Write("Transfer-Encoding: chunked\r\n"u8);
                break;
        }
        writer.Write(closing ? "Connection: close\r\n\r\n"u8 : "\r\n"u8);
    }

    /// <summary>A chunk-size line (without its CRLF): hex digits, then optionally extensions, which are dropped.</summary>
    public static bool TryParseChunkSize(ReadOnlySpan<byte> line, out long size)
    {
        size = 0;
        var digits = 0;
        while (digits < line.Length && HexValue(line[digits]) is var digit and >= 0)
        {
            if (digits == 15)
            {
                return false;
            }
            size = size * 16 + digit;
            digits++;
        }
        if (digits == 0)
        {
            return false;
        }
        var rest = line[digits..].TrimStart(" \t"u8);
        return rest.IsEmpty || (rest[0] == (byte)';' && rest.IndexOfAnyExcept(Http1Request.TextBytes) < 0);
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private static bool Names(ReadOnlySpan<byte> connection, ReadOnlySpan<byte> name)
    {
        foreach (var range in connection.Split((byte)','))
        {
            if (Ascii.EqualsIgnoreCase(connection[range].Trim(" \t"u8), name))
            {
                return true;
            }
        }
        return false;
    }

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    private static Role RoleOf(ReadOnlySpan<byte> name) => name.Length switch
    {
        4 when Ascii.EqualsIgnoreCase(name, "date"u8) => Role.Date,
        4 when Ascii.EqualsIgnoreCase(name, "alpn"u8) => Role.Hop,
        5 when Ascii.EqualsIgnoreCase(name, "close"u8) => Role.Hop,
        7 when Ascii.EqualsIgnoreCase(name, "upgrade"u8) => Role.Hop,
        7 when Ascii.EqualsIgnoreCase(name, "alt-svc"u8) => Role.Hop,
        10 when Ascii.EqualsIgnoreCase(name, "connection"u8) => Role.Hop,
        10 when Ascii.EqualsIgnoreCase(name, "keep-alive"u8) => Role.Hop,
        14 when Ascii.EqualsIgnoreCase(name, "content-length"u8) => Role.ContentLength,
        13 when Ascii.EqualsIgnoreCase(name, "http2-settings"u8) => Role.Hop,
        17 when Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8) => Role.TransferEncoding,
        _ when name.Length > 6 && Ascii.EqualsIgnoreCase(name[..6], "proxy-"u8) => Role.Hop,
        _ => Role.Other,
    };
}
