using System.Net.Sockets;
using System.Text;

namespace Balancer.Frontends.Tcp;

/// <summary>
/// Reads a TLS ClientHello off a client connection without decrypting anything, to learn the
/// server name (SNI) it asks for; the bytes read are then sent on to the chosen backend, which
/// terminates TLS itself (passthrough).
/// </summary>
internal static class ClientHello
{
    private const int MaxRecord = 16 * 1024 + 5;

    /// <summary>
    /// The bytes read and the SNI name (null when the hello has none, or the client does not speak
    /// TLS); null bytes when the client sent nothing in time or closed.
    /// </summary>
    public static async Task<(byte[]? Bytes, string? ServerName)> ReadAsync(Socket client, TimeSpan timeout, CancellationToken stopping)
    {
        var buffer = new byte[MaxRecord];
        var filled = 0;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        deadline.CancelAfter(timeout);
        try
        {
            while (true)
            {
                var read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return (null, null);
                }
                filled += read;
                var outcome = Parse(buffer.AsSpan(0, filled), out var serverName);
                if (outcome != Outcome.NeedMore || filled == buffer.Length)
                {
                    return (buffer[..filled], serverName);
                }
            }
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            return (null, null);
        }
    }

    internal enum Outcome { NeedMore, Complete, NotTls }

    /// <summary>Parses the first TLS record as a ClientHello and finds its server_name extension.</summary>
    internal static Outcome Parse(ReadOnlySpan<byte> data, out string? serverName)
    {
        serverName = null;
        if (data.Length < 5)
        {
            return Outcome.NeedMore;
        }
        if (data[0] != 0x16)
        {
            return Outcome.NotTls;
        }
        var recordLength = (data[3] << 8) | data[4];
        if (data.Length < 5 + recordLength)
        {
            return Outcome.NeedMore;
        }
        var hello = data.Slice(5, recordLength);
        if (hello.Length < 4 || hello[0] != 0x01)
        {
            return Outcome.NotTls;
        }
        // handshake type and length (4), client version (2), random (32)
        var at = 4 + 2 + 32;
        if (!Skip(hello, ref at, 1) || !Skip(hello, ref at, 2) || !Skip(hello, ref at, 1) || at + 2 > hello.Length)
        {
            return Outcome.Complete;
        }
        var end = Math.Min(hello.Length, at + 2 + ((hello[at] << 8) | hello[at + 1]));
        at += 2;
        while (at + 4 <= end)
        {
            var type = (hello[at] << 8) | hello[at + 1];
            var length = (hello[at + 2] << 8) | hello[at + 3];
            at += 4;
            if (at + length > end)
            {
                break;
            }
            // server_name: list length (2), name type (1, 0 = host name), name length (2), name
            if (type == 0 && length >= 5 && hello[at + 2] == 0)
            {
                var nameLength = (hello[at + 3] << 8) | hello[at + 4];
                if (at + 5 + nameLength <= at + length)
                {
                    serverName = Encoding.ASCII.GetString(hello.Slice(at + 5, nameLength));
                }
                break;
            }
            at += length;
        }
        return Outcome.Complete;
    }

    /// <summary>Skips a field prefixed by its length in <paramref name="lengthBytes"/> bytes.</summary>
    private static bool Skip(ReadOnlySpan<byte> hello, ref int at, int lengthBytes)
    {
        if (at + lengthBytes > hello.Length)
        {
            return false;
        }
        var length = lengthBytes == 1 ? hello[at] : (hello[at] << 8) | hello[at + 1];
        at += lengthBytes + length;
        return at <= hello.Length;
    }
}
