using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it hangs
/// until the connecting side gives up (a backend that neither answers nor refuses).
/// </summary>
internal sealed class StuckListener : IDisposable
{
    private readonly Socket _listener = new(SocketType.Stream, ProtocolType.Tcp);
    private readonly List<Socket> _fillers = new();

    private StuckListener()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public static async Task<StuckListener> StartAsync()
    {
        var stuck = new StuckListener();
        for (var i = 0; i < 4; i++)
        {
            var filler = new Socket(SocketType.Stream, ProtocolType.Tcp);
            _ = filler.ConnectAsync(stuck._listener.LocalEndPoint!);
            stuck._fillers.Add(filler);
        }
        await Task.Delay(200);
        return stuck;
    }

    public void Dispose()
    {
        _fillers.ForEach(f => f.Dispose());
        _listener.Dispose();
    }
}
