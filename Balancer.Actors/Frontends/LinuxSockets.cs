using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Balancer.Frontends;

/// <summary>
/// The Linux calls <see cref="EventLoop"/> makes itself: epoll, an eventfd to wake it, and
/// non-blocking socket calls on raw descriptors. Buffers are passed by reference to their first
/// byte, which the marshaller pins for the call.
/// </summary>
internal static class LinuxSockets
{
    public const uint Readable = 0x001;
    public const uint Writable = 0x004;
    public const uint Error = 0x008;
    public const uint HangUp = 0x010;
    public const uint PeerClosed = 0x2000;
    public const uint EdgeTriggered = 1u << 31;

    public const int TryAgain = 11;
    public const int Interrupted = 4;
    public const int InProgress = 115;
    public const int Canceled = 125;

    private const int CtlAdd = 1;
    private const int CtlDelete = 2;
    private const int CtlModify = 3;
    private const int CloseOnExec = 0x80000;
    private const int NonBlocking = 0x800;
    private const int DontWait = 0x40;
    private const int PeekFlag = 0x2;
    private const int NoSignal = 0x4000;
    private const int StreamSocket = 1;
    private const int SocketLevel = 1;
    private const int SocketErrorOption = 4;
    private const int LingerOption = 13;
    private const int TcpLevel = 6;
    private const int TcpNoDelay = 1;
    private const int ShutdownWrite = 1;
    private const int ShutdownReadWrite = 2;
    private const int DuplicateCloseOnExec = 1030;
    private const ushort InterNetwork = 2;
    private const ushort InterNetworkV6 = 10;

    /// <summary>Linux on x64 or arm64: where the layout of <c>struct epoll_event</c> is known here.</summary>
    public static bool Supported =>
        OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    /// <summary>The size of <c>struct epoll_event</c>: packed on x86-64 (12 bytes), naturally aligned elsewhere (16).</summary>
    public static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    private static readonly int DataOffset = EventSize == 12 ? 4 : 8;

    public static int LastError => Marshal.GetLastPInvokeError();

    public static int CreateEpoll() => Check(EpollCreate1(CloseOnExec), "epoll_create1");

    public static int CreateEventFd() => Check(EventFd(0, NonBlocking | CloseOnExec), "eventfd");

    /// <summary>Adds, changes or (<paramref name="events"/> 0) removes <paramref name="fd"/>'s registration, tagged <paramref name="tag"/>; false when epoll refused it.</summary>
    public static bool Register(int epoll, int fd, uint events, ulong tag, bool registered)
    {
        Span<byte> entry = stackalloc byte[16];
        entry.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(entry, events);
        BinaryPrimitives.WriteUInt64LittleEndian(entry[DataOffset..], tag);
        var op = events == 0 ? CtlDelete : registered ? CtlModify : CtlAdd;
        return EpollCtl(epoll, op, fd, ref entry[0]) == 0;
    }

    /// <summary>Makes the descriptor's close a reset (SO_LINGER 0), as a connection that broke off is passed on.</summary>
    public static void ResetOnClose(int fd)
    {
        Span<int> linger = [1, 0];
        _ = SetSockOpt(fd, SocketLevel, LingerOption, ref linger[0], 2 * sizeof(int));
    }

    public static int Wait(int epoll, byte[] events, int timeoutMilliseconds) =>
        EpollWait(epoll, ref events[0], events.Length / EventSize, timeoutMilliseconds);

    public static uint EventsAt(byte[] events, int index) => BinaryPrimitives.ReadUInt32LittleEndian(events.AsSpan(index * EventSize));

    public static ulong TagAt(byte[] events, int index) => BinaryPrimitives.ReadUInt64LittleEndian(events.AsSpan(index * EventSize + DataOffset));

    public static void Signal(int eventFd)
    {
        Span<byte> one = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        _ = Write(eventFd, ref one[0], 8);
    }

    public static void Drain(int eventFd)
    {
        Span<byte> count = stackalloc byte[8];
        _ = Read(eventFd, ref count[0], 8);
    }

    /// <summary>Bytes received into <paramref name="buffer"/>, 0 at end of stream, -1 with <see cref="LastError"/> set.</summary>
    public static int Receive(int fd, Span<byte> buffer) =>
        (int)Recv(fd, ref MemoryMarshal.GetReference(buffer), buffer.Length, DontWait);

    /// <summary>Whether a byte waits, without taking it: 1, 0 at end of stream, -1 with <see cref="LastError"/> set.</summary>
    public static int Peek(int fd)
    {
        Span<byte> one = stackalloc byte[1];
        return (int)Recv(fd, ref one[0], 1, DontWait | PeekFlag);
    }

    /// <summary>Bytes of <paramref name="data"/> sent, or -1 with <see cref="LastError"/> set (never SIGPIPE).</summary>
    public static int Send(int fd, ReadOnlySpan<byte> data) =>
        (int)SendTo(fd, ref MemoryMarshal.GetReference(data), data.Length, DontWait | NoSignal);

    public static void ShutdownSending(int fd) => _ = Shutdown(fd, ShutdownWrite);

    public static void ShutdownBoth(int fd) => _ = Shutdown(fd, ShutdownReadWrite);

    /// <summary>
    /// A descriptor of its own for the socket <paramref name="socket"/> holds (close-on-exec), so that
    /// closing the other one leaves the connection open; null with <see cref="LastError"/> set.
    /// </summary>
    public static SocketDescriptor? Duplicate(SafeHandle socket)
    {
        var added = false;
        socket.DangerousAddRef(ref added);
        try
        {
            var fd = Control(socket.DangerousGetHandle().ToInt32(), DuplicateCloseOnExec, 0);
            return fd < 0 ? null : new SocketDescriptor(fd);
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>The error a connect ended with (0: connected).</summary>
    public static int ConnectError(int fd)
    {
        var error = 0;
        var length = sizeof(int);
        return GetSockOpt(fd, SocketLevel, SocketErrorOption, ref error, ref length) == 0 ? error : LastError;
    }

    /// <summary>
    /// Starts a non-blocking connect to <paramref name="endPoint"/>: the socket, and 0 when it is
    /// connected already, <see cref="InProgress"/> while it connects, another errno when it failed.
    /// </summary>
    public static (SocketDescriptor? Socket, int Error) StartConnect(IPEndPoint endPoint)
    {
        var address = endPoint.Address.IsIPv4MappedToIPv6 ? endPoint.Address.MapToIPv4() : endPoint.Address;
        var v6 = address.AddressFamily == AddressFamily.InterNetworkV6;
        var fd = CreateSocket(v6 ? InterNetworkV6 : InterNetwork, StreamSocket | NonBlocking | CloseOnExec, 0);
        if (fd < 0)
        {
            return (null, LastError);
        }
        var socket = new SocketDescriptor(fd);
        var one = 1;
        _ = SetSockOpt(fd, TcpLevel, TcpNoDelay, ref one, sizeof(int));
        Span<byte> name = stackalloc byte[28];
        name.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(name, v6 ? InterNetworkV6 : InterNetwork);
        BinaryPrimitives.WriteUInt16BigEndian(name[2..], (ushort)endPoint.Port);
        if (v6)
        {
            address.TryWriteBytes(name.Slice(8, 16), out _);
            BinaryPrimitives.WriteUInt32LittleEndian(name[24..], (uint)address.ScopeId);
        }
        else
        {
            address.TryWriteBytes(name.Slice(4, 4), out _);
        }
        var error = ConnectTo(fd, ref name[0], v6 ? 28 : 16) == 0 ? 0 : LastError;
        if (error != 0 && error != InProgress)
        {
            socket.Dispose();
            return (null, error);
        }
        return (socket, error);
    }

    /// <summary>The <see cref="SocketException"/> of an errno from a send or receive.</summary>
    public static SocketException Failure(int errno) => errno switch
    {
        104 => new SocketException((int)SocketError.ConnectionReset),
        32 => new SocketException((int)SocketError.Shutdown),
        110 => new SocketException((int)SocketError.TimedOut),
        111 => new SocketException((int)SocketError.ConnectionRefused),
        101 => new SocketException((int)SocketError.NetworkUnreachable),
        113 => new SocketException((int)SocketError.HostUnreachable),
        _ => new SocketException((int)SocketError.SocketError, $"errno {errno}"),
    };

    private static int Check(int result, string call) =>
        result >= 0 ? result : throw new SocketException((int)SocketError.SocketError, $"{call} failed (errno {LastError})");

    [DllImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static extern int EpollCreate1(int flags);

    [DllImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static extern int EpollCtl(int epoll, int op, int fd, ref byte evt);

    [DllImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static extern int EpollWait(int epoll, ref byte events, int maxEvents, int timeout);

    [DllImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static extern int EventFd(uint initial, int flags);

    [DllImport("libc", EntryPoint = "read", SetLastError = true)]
    private static extern nint Read(int fd, ref byte buffer, nint count);

    [DllImport("libc", EntryPoint = "write", SetLastError = true)]
    private static extern nint Write(int fd, ref byte buffer, nint count);

    [DllImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static extern nint Recv(int fd, ref byte buffer, nint count, int flags);

    [DllImport("libc", EntryPoint = "send", SetLastError = true)]
    private static extern nint SendTo(int fd, ref byte buffer, nint count, int flags);

    [DllImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static extern int Shutdown(int fd, int how);

    [DllImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static extern int CreateSocket(int domain, int type, int protocol);

    [DllImport("libc", EntryPoint = "connect", SetLastError = true)]
    private static extern int ConnectTo(int fd, ref byte address, int length);

    [DllImport("libc", EntryPoint = "getsockopt", SetLastError = true)]
    private static extern int GetSockOpt(int fd, int level, int name, ref int value, ref int length);

    [DllImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    private static extern int SetSockOpt(int fd, int level, int name, ref int value, int length);

    [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static extern int Control(int fd, int command, int argument);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    internal static extern int CloseDescriptor(int fd);
}

/// <summary>A socket descriptor the event loop made itself (a backend connection); closed when released.</summary>
internal sealed class SocketDescriptor : SafeHandleMinusOneIsInvalid
{
    public SocketDescriptor(int fd) : base(ownsHandle: true) => SetHandle(fd);

    protected override bool ReleaseHandle() => LinuxSockets.CloseDescriptor((int)handle) == 0;
}
