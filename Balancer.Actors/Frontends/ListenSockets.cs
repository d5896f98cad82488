using System.Net;
using System.Net.Sockets;
using Balancer.Configuration;

namespace Balancer.Frontends;

/// <summary>Creates listening sockets the way both frontend kinds need them.</summary>
internal static class ListenSockets
{
    private const int SolSocket = 1;
    private const int SoReusePort = 15;

    /// <summary>The socket address to listen on for a configured bind address.</summary>
    public static IPEndPoint Resolve(EndpointAddress address) =>
        address.IPEndPoint ?? new IPEndPoint(IPAddress.Loopback, address.Port);

    /// <summary>
    /// A bound (not yet listening) socket; with <paramref name="reusePort"/> it sets SO_REUSEPORT so
    /// that several processes share the port and the kernel spreads connections among them.
    /// </summary>
    public static Socket CreateBound(EndPoint endPoint, bool reusePort)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint is IPEndPoint { Address.AddressFamily: AddressFamily.InterNetworkV6 } ip && ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }
            if (reusePort)
            {
                EnableReusePort(socket);
            }
            socket.Bind(endPoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sets SO_REUSEPORT; Linux only, where the kernel balances accepted connections.</summary>
    public static void EnableReusePort(Socket socket)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("reuse-port = on needs Linux (SO_REUSEPORT)");
        }
        socket.SetRawSocketOption(SolSocket, SoReusePort, BitConverter.GetBytes(1));
    }

    /// <summary>
    /// True when connections queued on a dying listener are migrated to another listener of the
    /// same port (Linux ≥ 5.14, net.ipv4.tcp_migrate_req = 1); without it a node's death resets them.
    /// </summary>
    public static bool? MigratesQueuedConnections()
    {
        try
        {
            return File.ReadAllText("/proc/sys/net/ipv4/tcp_migrate_req").Trim() == "1";
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
