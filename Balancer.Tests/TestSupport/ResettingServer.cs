using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>Accepts, reads the request, then resets the connection without answering; counts the requests it reset.</summary>
internal sealed class ResettingServer : IDisposable
{
    private readonly Socket _listener = new(SocketType.Stream, ProtocolType.Tcp);
    private int _reset;

    public ResettingServer()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptAsync();
                }
                catch (Exception)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    try
                    {
                        await client.ReceiveAsync(new byte[4096]);
                        Interlocked.Increment(ref _reset);
                        client.LingerState = new LingerOption(true, 0);
                    }
                    catch (SocketException)
                    {
                    }
                    finally
                    {
                        client.Dispose();
                    }
                });
            }
        });
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>Requests received and reset.</summary>
    public int Reset => Volatile.Read(ref _reset);

    public void Dispose() => _listener.Dispose();
}
