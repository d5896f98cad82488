using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Balancer.Configuration;

namespace Balancer.Frontends;

/// <summary>Creates listening sockets the way both frontend kinds need them.</summary>
internal static class ListenSockets
{
    private const int SolSocket = 1;
    private const int SoReusePort = 15;
    private const int SoAttachFilter = 26;
    private const int IpProtoTcp = 6;
    private const int TcpInfo = 11;
    // struct tcp_info: for a listening socket, tcpi_unacked is the length of its accept queue.
    private const int TcpInfoUnackedOffset = 24;
    private static readonly TimeSpan MinimumWait = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// A classic BPF socket filter that drops a TCP segment with SYN set and ACK clear (a new
    /// connection's first packet) and keeps every other one, so handshakes under way still complete.
    /// Each instruction is struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }; the filter sees
    /// the segment from its TCP header, whose flags are byte 13.
    /// </summary>
    private static readonly byte[] DropNewConnections =
    [
        0x30, 0x00, 0, 0, 13, 0, 0, 0,                  // ldb [13]        A = flags
        0x54, 0x00, 0, 0, 0x12, 0, 0, 0,                // and #0x12       A &= SYN|ACK
        0x15, 0x00, 0, 1, 0x02, 0, 0, 0,                // jeq #0x02, 0, 1 SYN alone?
        0x06, 0x00, 0, 0, 0, 0, 0, 0,                   // ret #0          drop it
        0x06, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff,       // ret #-1         keep the rest whole
    ];

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
    /// Closes the door on <paramref name="listeners"/> without slamming it on anyone: new
    /// connections are no longer completed (their SYNs are dropped; the client's retransmission,
    /// a second later, finds the port closed and is refused, so it tries elsewhere), while the
    /// ones the kernel completed already are still accepted by the running accept loop. Returns
    /// once every accept queue has stayed empty for 60 ms, and 200 ms at least have passed (a
    /// handshake under way completes within a round trip on any network a cluster spans), or after
    /// <paramref name="within"/>. Without this, closing a listener
    /// resets the connections in its accept queue: clients that connected a moment before the
    /// stop lose a request they had already sent. Linux only; elsewhere it returns at once.
    /// </summary>
    public static async Task StopAdmittingAsync(IReadOnlyCollection<Socket> listeners, TimeSpan within)
    {
        if (!OperatingSystem.IsLinux() || listeners.Count == 0 || !listeners.All(TryDropNewConnections))
        {
            return;
        }
        var waited = Stopwatch.StartNew();
        // 200 ms at least: a handshake under way (its SYN came before the filter) completes
        // within a round trip, and its connection is then queued and accepted too.
        var atLeast = within < MinimumWait ? within : MinimumWait;
        for (var emptyTimes = 0; (emptyTimes < 3 || waited.Elapsed < atLeast) && waited.Elapsed < within;)
        {
            emptyTimes = listeners.All(l => QueuedConnections(l) is null or 0) ? emptyTimes + 1 : 0;
            await Task.Delay(20).ConfigureAwait(false);
        }
    }

    /// <summary>How long a stop given <paramref name="grace"/> waits for accept queues to empty: at most a second.</summary>
    public static TimeSpan AdmittingStopsWithin(TimeSpan grace) => grace < TimeSpan.FromSeconds(1) ? grace : TimeSpan.FromSeconds(1);

    /// <summary>Attaches <see cref="DropNewConnections"/> to a listening socket; false when it cannot be.</summary>
    private static bool TryDropNewConnections(Socket listener)
    {
        var filter = Marshal.AllocHGlobal(DropNewConnections.Length);
        try
        {
            Marshal.Copy(DropNewConnections, 0, filter, DropNewConnections.Length);
            // struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the pointer is pointer-aligned.
            var program = new byte[2 * IntPtr.Size];
            BitConverter.TryWriteBytes(program.AsSpan(0, 2), (ushort)(DropNewConnections.Length / 8));
            if (IntPtr.Size == 8)
            {
                BitConverter.TryWriteBytes(program.AsSpan(8), filter.ToInt64());
            }
            else
            {
                BitConverter.TryWriteBytes(program.AsSpan(4), filter.ToInt32());
            }
            listener.SetRawSocketOption(SolSocket, SoAttachFilter, program);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            Marshal.FreeHGlobal(filter);
        }
    }

    /// <summary>Connections completed by the kernel and not yet accepted on <paramref name="listener"/>; null when unknown.</summary>
    internal static int? QueuedConnections(Socket listener)
    {
        try
        {
            Span<byte> info = stackalloc byte[256];
            return listener.GetRawSocketOption(IpProtoTcp, TcpInfo, info) >= TcpInfoUnackedOffset + 4
                ? BitConverter.ToInt32(info.Slice(TcpInfoUnackedOffset, 4))
                : null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
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
