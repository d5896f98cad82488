using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Balancer.Frontends.Http;

/// <summary>
/// One kept-alive HTTP/1.1 connection from the fast path to a backend: the socket (on an event
/// loop of Balancer's own, or .NET's) and the buffer responses are read into. Used by one request
/// at a time.
/// </summary>
internal sealed class Http1BackendConnection : IDisposable
{
    public const int BufferSize = 16 * 1024;

    private readonly Socket? _socket;
    private readonly LoopSocket? _loopSocket;

    public Http1BackendConnection(Socket socket) => _socket = socket;

    public Http1BackendConnection(LoopSocket socket) => _loopSocket = socket;

    public ValueTask<int> ReceiveAsync(Memory<byte> buffer) =>
        _loopSocket is { } loopSocket ? loopSocket.ReceiveAsync(buffer) : _socket!.ReceiveAsync(buffer, SocketFlags.None);

    public ValueTask<int> SendAsync(ReadOnlyMemory<byte> data) =>
        _loopSocket is { } loopSocket ? loopSocket.SendAsync(data) : _socket!.SendAsync(data, SocketFlags.None);

    /// <summary>True when it shows nothing readable while idle: readable means closed, or bytes that answer nothing.</summary>
    public bool LooksIdle()
    {
        if (_loopSocket is { } loopSocket)
        {
            return loopSocket.LooksIdle();
        }
        try
        {
            return !_socket!.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Ends what waits on it with an error (a deadline passed).</summary>
    public void Abort()
    {
        if (_loopSocket is { } loopSocket)
        {
            loopSocket.Abort();
        }
        else
        {
            _socket!.Dispose();
        }
    }

    /// <summary>Response bytes read and not yet used are <c>Buffer[Start..End]</c>.</summary>
    public byte[] Buffer { get; private set; } = new byte[BufferSize];

    public int Start;

    public int End;

    /// <summary>True when it was used for an earlier request (a backend may have closed it since).</summary>
    public bool Reused;

    /// <summary>When it was last given back, in <see cref="Environment.TickCount64"/> milliseconds.</summary>
    public long IdleSince;

    /// <summary>Makes room for at least <paramref name="more"/> bytes after <see cref="End"/>, moving what is unread to the front (and growing up to <paramref name="max"/>).</summary>
    public bool MakeRoom(int more, int max)
    {
        if (Buffer.Length - End >= more)
        {
            return true;
        }
        var unread = End - Start;
        if (Start > 0)
        {
            System.Buffer.BlockCopy(Buffer, Start, Buffer, 0, unread);
            Start = 0;
            End = unread;
            if (Buffer.Length - End >= more)
            {
                return true;
            }
        }
        if (Buffer.Length >= max)
        {
            return false;
        }
        var grown = new byte[Math.Min(max, Buffer.Length * 2)];
        System.Buffer.BlockCopy(Buffer, 0, grown, 0, End);
        Buffer = grown;
        return Buffer.Length - End >= more;
    }

    public void Dispose()
    {
        _loopSocket?.Dispose();
        _socket?.Dispose();
    }
}

/// <summary>
/// The fast path's idle connections to each backend address, as HttpClient keeps them for YARP:
/// taken last-in first-out (the warmest first) without a lock, closed after a minute unused, and
/// checked before each reuse (on an event loop, by what it saw; else one poll): a connection the
/// backend closed, or that has bytes nobody asked for, is not used again.
/// </summary>
internal sealed class Http1BackendConnections : IDisposable
{
    private static readonly TimeSpan IdleTimeout = Routing.BackendTransport.PooledConnectionIdleTimeout;

    // By address and the client's event loop (-1: none): a client connection takes the idle
    // connections made on its own loop, so that its request and its answer stay on one thread
    // (HAProxy keeps idle connections by thread).
    private readonly ConcurrentDictionary<(EndPoint Address, int Loop), IdleConnections> _byAddress = new();
    private readonly Timer _sweep;
    private volatile bool _disposed;

    public Http1BackendConnections()
    {
        _sweep = new Timer(static state => ((Http1BackendConnections)state!).Sweep(), this, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
    }

    /// <summary>An idle connection to <paramref name="address"/> kept for clients of event loop <paramref name="loop"/> (-1: none) that still looks open, or null.</summary>
    public Http1BackendConnection? TakeIdle(EndPoint address, int loop)
    {
        if (!_byAddress.TryGetValue((address, loop), out var idle))
        {
            return null;
        }
        while (idle.TryTake() is { } connection)
        {
            if (connection.LooksIdle())
            {
                return connection;
            }
            connection.Dispose();
        }
        return null;
    }

    /// <summary>Keeps <paramref name="connection"/> for the next request to <paramref name="address"/> from a client of event loop <paramref name="loop"/> (or closes it when enough are kept).</summary>
    public void GiveBack(EndPoint address, int loop, Http1BackendConnection connection)
    {
        if (_disposed)
        {
            connection.Dispose();
            return;
        }
        connection.Reused = true;
        connection.Start = connection.End = 0;
        connection.IdleSince = Environment.TickCount64;
        if (!_byAddress.GetOrAdd((address, loop), static _ => new IdleConnections()).TryAdd(connection))
        {
            connection.Dispose();
        }
    }

    private void Sweep()
    {
        var now = Environment.TickCount64;
        foreach (var (_, idle) in _byAddress)
        {
            idle.CloseIdle(now - (long)IdleTimeout.TotalMilliseconds);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _sweep.Dispose();
        foreach (var (_, idle) in _byAddress)
        {
            idle.CloseIdle(long.MaxValue);
        }
    }

    /// <summary>A fixed set of slots taken and filled with compare-and-swap: no lock and no allocation per request.</summary>
    private sealed class IdleConnections
    {
        private const int Slots = 256;

        private readonly Http1BackendConnection?[] _slots = new Http1BackendConnection?[Slots];
        private int _hint;

        public Http1BackendConnection? TryTake()
        {
            var start = Volatile.Read(ref _hint);
            for (var i = 0; i < Slots; i++)
            {
                var index = (start - i) & (Slots - 1);
                if (Volatile.Read(ref _slots[index]) is { } connection && Interlocked.CompareExchange(ref _slots[index], null, connection) == connection)
                {
                    Volatile.Write(ref _hint, index);
                    return connection;
                }
            }
            return null;
        }

        public bool TryAdd(Http1BackendConnection connection)
        {
            var start = Volatile.Read(ref _hint);
            for (var i = 0; i < Slots; i++)
            {
                var index = (start + i) & (Slots - 1);
                if (Volatile.Read(ref _slots[index]) is null && Interlocked.CompareExchange(ref _slots[index], connection, null) is null)
                {
                    Volatile.Write(ref _hint, index);
                    return true;
                }
            }
            return false;
        }

        public void CloseIdle(long idleBefore)
        {
            for (var index = 0; index < Slots; index++)
            {
                if (Volatile.Read(ref _slots[index]) is { } connection && connection.IdleSince < idleBefore
                    && Interlocked.CompareExchange(ref _slots[index], null, connection) == connection)
                {
                    connection.Dispose();
                }
            }
        }
    }
}
