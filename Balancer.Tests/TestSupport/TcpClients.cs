using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>Raw-socket client steps shared by the TCP frontend tests, each bounded in time.</summary>
internal static class TcpClients
{
    public static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint).WaitAsync(TimeSpan.FromSeconds(10));
        return socket;
    }

    /// <summary>Sends one byte through an echoing backend and checks it comes back.</summary>
    public static async Task AssertEchoAsync(Socket socket, byte value = 42)
    {
        await socket.SendAsync(new[] { value });
        var buffer = new byte[1];
        Assert.Equal(1, await socket.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(value, buffer[0]);
    }

    /// <summary>Reads until end of stream; a reset also ends it.</summary>
    public static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer)) > 0)
            {
                all.Write(buffer, 0, read);
            }
        }
        catch (SocketException)
        {
        }
        return all.ToArray();
    }
}
