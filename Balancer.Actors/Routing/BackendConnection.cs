using System.Net;
using System.Net.Sockets;

namespace Balancer.Routing;

/// <summary>Opens connections to backends for the HTTP client of a pool and for TCP frontends alike.</summary>
internal static class BackendConnection
{
    /// <summary>
    /// A connected socket to <paramref name="endPoint"/>. A connect that takes longer than
    /// <paramref name="connectTimeout"/> fails as a refused one would (a <see cref="SocketException"/>
    /// with <see cref="SocketError.TimedOut"/>), so callers retry it on another backend rather than
    /// take it for a slow answer; <paramref name="cancellationToken"/> still cancels.
    /// </summary>
    public static async Task<Socket> ConnectAsync(EndPoint endPoint, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(connectTimeout);
        try
        {
            await socket.ConnectAsync(endPoint, timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new SocketException((int)SocketError.TimedOut);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
