using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Balancer.Frontends;

/// <summary>
/// A connected socket whose owner reads and writes it itself, with a <see cref="EventLoop"/>
/// saying when it is worth trying (edge-triggered: each arrival, each freed send buffer, a hang-up).
/// <para>
/// A receive is made only when something came since the socket was last found drained, so a read
/// waits for the data instead of trying before it is there (what .NET's sockets do on every
/// receive); a read that returned less than asked counts as draining it, as whatever comes later is
/// a new edge. The same count tells, without a system call, whether an idle connection was closed
/// or sent something nobody asked for. One receive and one send may wait at once (a backend
/// connection's owner uses one at a time; a client connection's receive loop and send loop one each).
/// A wait's continuation runs on the loop's thread, as Kestrel's inline scheduling does on its own.
/// </para>
/// </summary>
internal sealed class LoopSocket : EventLoop.Registration, IDisposable
{
    private readonly EventLoop _loop;
    private readonly SocketDescriptor _socket;
    private readonly int _fd;
    private readonly Waiter _reader = new();
    private readonly Waiter _writer = new();
    // Edges the loop saw, and the count at which the owner last found the socket drained (or full).
    private int _readEdges;
    private int _readSeen;
    private int _writeEdges = 1;
    private int _writeSeen;
    private volatile bool _aborted;
    // The peer's end of stream (or an error) is a state, not an arrival: once seen, reads are
    // always tried, since a short read that took the last data says nothing about it.
    private volatile bool _hungUp;

    internal LoopSocket(EventLoop loop, SocketDescriptor socket)
    {
        _loop = loop;
        _socket = socket;
        _fd = (int)socket.DangerousGetHandle();
    }

    /// <summary>The loop that watches it, on whose thread its waits end.</summary>
    public EventLoop Loop => _loop;

    /// <summary>Bytes received into <paramref name="buffer"/> once some came; 0 at end of stream.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReceiveAsync(Memory<byte> buffer)
    {
        while (true)
        {
            var edges = Volatile.Read(ref _readEdges);
            if (_aborted)
            {
                throw new ObjectDisposedException(nameof(LoopSocket));
            }
            if (edges != _readSeen || _hungUp)
            {
                var read = LinuxSockets.Receive(_fd, buffer.Span);
                if (read >= 0)
                {
                    if (read < buffer.Length)
                    {
                        _readSeen = edges;
                    }
                    return read;
                }
                var error = LinuxSockets.LastError;
                if (error == LinuxSockets.TryAgain)
                {
                    _readSeen = edges;
                }
                else if (error != LinuxSockets.Interrupted)
                {
                    throw LinuxSockets.Failure(error);
                }
                continue;
            }
            await WaitAsync(_reader, edges).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Returns once a receive is worth trying (something came, or the peer hung up), without a
    /// system call or a buffer: an idle connection holds no memory while it waits.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WaitToReceiveAsync()
    {
        while (true)
        {
            var edges = Volatile.Read(ref _readEdges);
            if (_aborted)
            {
                throw new ObjectDisposedException(nameof(LoopSocket));
            }
            if (edges != _readSeen || _hungUp)
            {
                return;
            }
            await WaitAsync(_reader, edges).ConfigureAwait(false);
        }
    }

    /// <summary>Bytes of <paramref name="data"/> sent, once the socket took some.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> SendAsync(ReadOnlyMemory<byte> data)
    {
        while (true)
        {
            var edges = Volatile.Read(ref _writeEdges);
            if (_aborted)
            {
                throw new ObjectDisposedException(nameof(LoopSocket));
            }
            if (edges != _writeSeen)
            {
                var sent = LinuxSockets.Send(_fd, data.Span);
                if (sent >= 0)
                {
                    return sent;
                }
                var error = LinuxSockets.LastError;
                if (error == LinuxSockets.TryAgain)
                {
                    _writeSeen = edges;
                }
                else if (error != LinuxSockets.Interrupted)
                {
                    throw LinuxSockets.Failure(error);
                }
                continue;
            }
            await WaitAsync(_writer, edges).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// True when nothing came since the last response was read (no bytes nobody asked for, no close);
    /// a system call only when the last read filled its buffer, so that it could not tell.
    /// </summary>
    public bool LooksIdle()
    {
        var edges = Volatile.Read(ref _readEdges);
        if (_aborted || _hungUp)
        {
            return false;
        }
        if (edges == _readSeen)
        {
            return true;
        }
        if (LinuxSockets.Peek(_fd) < 0 && LinuxSockets.LastError == LinuxSockets.TryAgain)
        {
            _readSeen = edges;
            return true;
        }
        return false;
    }

    /// <summary>
    /// Ends a wait with an error, and every later call (a deadline passed); the close will be a
    /// reset. The wait ends on the loop's thread, not the caller's (a deadline timer's).
    /// <see cref="Dispose"/> still closes it.
    /// </summary>
    public void Abort()
    {
        if (_aborted)
        {
            return;
        }
        ResetOnClose();
        Stop();
    }

    /// <summary>Ends both directions with a FIN (where the socket is still open); the waits see the end of stream.</summary>
    public void Shutdown()
    {
        if (AddRef(_socket))
        {
            LinuxSockets.ShutdownBoth(_fd);
            _socket.DangerousRelease();
        }
    }

    /// <summary>The close will be a reset (SO_LINGER 0), not a FIN.</summary>
    public void ResetOnClose()
    {
        // Held while it is set: an owner's Dispose racing this must not let the number be reused under it.
        if (AddRef(_socket))
        {
            LinuxSockets.ResetOnClose(_fd);
            _socket.DangerousRelease();
        }
    }

    /// <summary>
    /// Ends what waits, and every later call, with <see cref="ObjectDisposedException"/>; the socket
    /// stays open, so that a call already past its check reads or writes this socket and no other,
    /// until the owner, once nothing calls any more, disposes it.
    /// </summary>
    public void Stop()
    {
        if (!_aborted)
        {
            _aborted = true;
            _loop.Run(WakeBoth);
        }
    }

    /// <summary>Leaves the loop and closes the socket (once the loop let go of it).</summary>
    public void Dispose()
    {
        Stop();
        _loop.Leave(this);
        _socket.Dispose();
    }

    private void WakeBoth()
    {
        Interlocked.Increment(ref _readEdges);
        Interlocked.Increment(ref _writeEdges);
        _reader.Wake();
        _writer.Wake();
    }

    private ValueTask WaitAsync(Waiter waiter, int edgesSeen)
    {
        var reading = waiter == _reader;
        var version = waiter.Begin();
        // An edge between reading the count and setting the waiter would otherwise be missed.
        var edges = reading ? Volatile.Read(ref _readEdges) : Volatile.Read(ref _writeEdges);
        if ((edges != edgesSeen || (reading && _hungUp)) && waiter.TryCancel())
        {
            return ValueTask.CompletedTask;
        }
        return new ValueTask(waiter, version);
    }

    public override bool TakeHandles() => AddRef(_socket);

    public override void Started(EventLoop loop)
    {
        if (!loop.Register(_fd, LinuxSockets.Readable | LinuxSockets.Writable | LinuxSockets.PeerClosed | LinuxSockets.EdgeTriggered, (ulong)Slot << 1, registered: false))
        {
            // Not watched, so nothing would ever wake a wait: the connection fails at its first use.
            Fail(loop);
        }
    }

    public override void OnEvents(EventLoop loop, uint events, bool backendSide, long now)
    {
        if ((events & (LinuxSockets.PeerClosed | LinuxSockets.HangUp | LinuxSockets.Error)) != 0)
        {
            _hungUp = true;
        }
        if ((events & (LinuxSockets.Readable | LinuxSockets.PeerClosed | LinuxSockets.HangUp | LinuxSockets.Error)) != 0)
        {
            Interlocked.Increment(ref _readEdges);
            _reader.Wake();
        }
        if ((events & (LinuxSockets.Writable | LinuxSockets.HangUp | LinuxSockets.Error)) != 0)
        {
            Interlocked.Increment(ref _writeEdges);
            _writer.Wake();
        }
    }

    public override void Complete(bool ok)
    {
        if (!ok)
        {
            _aborted = true;
            WakeBoth();
        }
    }

    protected override void ReleaseAll(EventLoop loop, bool ok)
    {
        loop.Register(_fd, 0, 0, registered: true);
        _socket.DangerousRelease();
    }

    /// <summary>One wait of one kind (a receive or a send) at a time, woken by the loop.</summary>
    private sealed class Waiter : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = false };
        private int _waiting;

        /// <summary>Starts a wait; the caller then checks once more for an edge it may have missed.</summary>
        public short Begin()
        {
            _core.Reset();
            // A full fence: the counts the caller reads next are read after the waiter is visible to the loop.
            Interlocked.Exchange(ref _waiting, 1);
            return _core.Version;
        }

        /// <summary>Takes the wait back (an edge came meanwhile); false when the loop woke it first.</summary>
        public bool TryCancel() => Interlocked.CompareExchange(ref _waiting, 0, 1) == 1;

        public void Wake()
        {
            if (Volatile.Read(ref _waiting) == 1 && Interlocked.CompareExchange(ref _waiting, 0, 1) == 1)
            {
                _core.SetResult(true);
            }
        }

        void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

        ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

        void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
