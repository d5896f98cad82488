using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A plain TCP backend: either echoes every byte as it arrives, or (collect mode) reads until the
/// client half-closes and then sends everything back reversed and closes; it proves that both
/// directions and the half-close travel through a splice.
/// </summary>
internal sealed class RawTcpServer : IDisposable
{
    private readonly Socket _listener = new(SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _stop = new();
    private int _accepted;

    public RawTcpServer(bool collectUntilEof = false) : this(null, collectUntilEof)
    {
    }

    /// <summary>A server that hands every accepted connection to <paramref name="serve"/> (which owns it).</summary>
    public RawTcpServer(Func<Socket, Task> serve) : this(serve, false)
    {
    }

    private RawTcpServer(Func<Socket, Task>? serve, bool collectUntilEof)
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception)
                {
                    return;
                }
                Interlocked.Increment(ref _accepted);
                _ = serve is not null ? serve(client) : collectUntilEof ? CollectAsync(client) : EchoAsync(client);
            }
        });
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public int Accepted => Volatile.Read(ref _accepted);

    private async Task EchoAsync(Socket client)
    {
        using var _ = client;
        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await client.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)) > 0)
            {
                await client.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception)
        {
        }
    }

    private async Task CollectAsync(Socket client)
    {
        using var _ = client;
        var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await client.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)) > 0)
            {
                received.Write(buffer, 0, read);
            }
            var reply = received.ToArray();
            Array.Reverse(reply);
            await client.SendAsync(reply, SocketFlags.None, _stop.Token);
            client.Shutdown(SocketShutdown.Send);
        }
        catch (Exception)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }
}
