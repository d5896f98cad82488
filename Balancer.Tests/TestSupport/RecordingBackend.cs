using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// An HTTP/1.1 backend on a raw socket that keeps every request it receives byte for byte (head
/// and body as they came over the wire) and answers each with <c>200 ok</c>, or as
/// <see cref="Answer"/> says. It reads bodies by Content-Length or chunked framing, which is all a
/// proxy should ever send it.
/// </summary>
internal sealed class RecordingBackend : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly RawTcpServer _server;

    public RecordingBackend() => _server = new RawTcpServer(ServeAsync);

    public int Port => _server.Port;

    /// <summary>Connections the proxy opened to this backend.</summary>
    public int Connections => _server.Accepted;

    /// <summary>Every request received, in order, as the bytes that carried it.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>The response to send (whole, raw); null: 200 with "ok" and a Content-Length.</summary>
    public Func<string, string>? Answer { get; set; }

    /// <summary>True when the response sent ends the connection (no length: the body runs to the close).</summary>
    public Func<string, bool> CloseAfter { get; set; } = _ => false;

    private async Task ServeAsync(Socket client)
    {
        using var _ = client;
        var reader = new Buffered(client, _stop.Token);
        try
        {
            while (true)
            {
                var head = await reader.ReadHeadAsync();
                if (head is null)
                {
                    return;
                }
                var request = new StringBuilder(head);
                var lines = head.Split("\r\n");
                var length = lines.Select(l => l.Split(':', 2)).Where(p => p.Length == 2 && p[0].Equals("Content-Length", StringComparison.OrdinalIgnoreCase)).Select(p => long.Parse(p[1].Trim())).FirstOrDefault();
                var chunked = lines.Any(l => l.StartsWith("Transfer-Encoding:", StringComparison.OrdinalIgnoreCase) && l.Contains("chunked", StringComparison.OrdinalIgnoreCase));
                if (chunked)
                {
                    while (true)
                    {
                        var sizeLine = await reader.ReadLineAsync();
                        request.Append(sizeLine).Append("\r\n");
                        var size = Convert.ToInt64(sizeLine.Split(';')[0].Trim(), 16);
                        if (size == 0)
                        {
                            // Trailers, then the empty line.
                            string trailer;
                            do
                            {
                                trailer = await reader.ReadLineAsync();
                                request.Append(trailer).Append("\r\n");
                            }
                            while (trailer.Length > 0);
                            break;
                        }
                        request.Append(await reader.ReadAsync(size + 2));
                    }
                }
                else if (length > 0)
                {
                    request.Append(await reader.ReadAsync(length));
                }
                var text = request.ToString();
                Requests.Enqueue(text);
                var answer = Answer?.Invoke(text) ?? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                await client.SendAsync(Encoding.Latin1.GetBytes(answer), SocketFlags.None, _stop.Token);
                if (CloseAfter(text))
                {
                    return;
                }
            }
        }
        catch (Exception)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _server.Dispose();
    }

    /// <summary>Reads lines and counted bytes off a socket, as Latin-1 so that every byte maps to one char.</summary>
    private sealed class Buffered(Socket socket, CancellationToken cancellationToken)
    {
        private readonly StringBuilder _pending = new();
        private readonly byte[] _buffer = new byte[16 * 1024];

        private async Task<bool> FillAsync()
        {
            var read = await socket.ReceiveAsync(_buffer, SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                return false;
            }
            _pending.Append(Encoding.Latin1.GetString(_buffer, 0, read));
            return true;
        }

        public async Task<string?> ReadHeadAsync()
        {
            while (true)
            {
                var text = _pending.ToString();
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    _pending.Remove(0, end + 4);
                    return text[..(end + 4)];
                }
                if (!await FillAsync())
                {
                    return null;
                }
            }
        }

        public async Task<string> ReadLineAsync()
        {
            while (true)
            {
                var text = _pending.ToString();
                var end = text.IndexOf("\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    _pending.Remove(0, end + 2);
                    return text[..end];
                }
                if (!await FillAsync())
                {
                    throw new IOException("closed in a line");
                }
            }
        }

        public async Task<string> ReadAsync(long count)
        {
            while (_pending.Length < count)
            {
                if (!await FillAsync())
                {
                    throw new IOException("closed in a body");
                }
            }
            var text = _pending.ToString(0, (int)count);
            _pending.Remove(0, (int)count);
            return text;
        }
    }
}
