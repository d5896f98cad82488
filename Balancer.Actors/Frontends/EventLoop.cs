using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Balancer.Frontends;

/// <summary>
/// A thread of Balancer's own around one epoll set (Linux), as HAProxy runs: it splices TCP
/// frontends' connections (<see cref="Splice"/>), and tells the HTTP fast path when its backend
/// connections can be read or written (<see cref="LoopSocket"/>).
/// <para>
/// A splice is level-triggered: a readable socket is read once and what came is written to the
/// other side at once; only what the other side does not take is kept, and its reader waits until
/// it is taken, so a read never has to drain a socket.
/// </para>
/// <para>
/// Why not .NET's <see cref="Socket"/>: each of its receives first tries a read that finds nothing
/// (one failed system call a message each way), and its completions go through its own event
/// thread. Here a request and its answer cost a read and a write each way, and the events of many
/// connections come in one wait. Backend connections are made here too (non-blocking connect), so
/// that .NET's event thread never watches them. A client socket only ever read through .NET (the
/// TLS server name of passthrough frontends) stays in .NET's set as well, which costs it wake-ups.
/// </para>
/// <para>
/// The loop owns every registration: sockets are added, and aborted, by requests it takes from a
/// queue. It holds a reference on each socket's handle while it uses the descriptor, so a socket
/// disposed meanwhile is closed only once the loop let go (its number is never reused under it).
/// </para>
/// </summary>
internal sealed class EventLoop
{
    private const int ReadSize = 64 * 1024;
    private const int MaxEvents = 256;
    private const int SweepMilliseconds = 250;
    private const ulong WakeTag = ulong.MaxValue;

    // Null when the system would not give the loops their epoll set or eventfd (a seccomp profile,
    // descriptors exhausted at that moment): callers then use .NET's sockets.
    private static readonly Lazy<EventLoop[]?> Loops = new(() =>
    {
        try
        {
            return [.. Enumerable.Range(0, Environment.ProcessorCount).Select(i => new EventLoop(i))];
        }
        catch (Exception e) when (e is SocketException or DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    });
    private static int _nextLoop;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly ConcurrentQueue<Action> _requests = new();
    private int _wakePending;
    private readonly byte[] _buffer = new byte[ReadSize];
    private Registration?[] _slots = new Registration?[64];
    private readonly Stack<int> _freeSlots = new();
    private int _slotsUsed;
    // Splices, the registrations the idle sweep looks at: without any, the loop waits without a timeout.
    private int _splices;

    private EventLoop(int index)
    {
        Index = index;
        _epoll = LinuxSockets.CreateEpoll();
        _wake = LinuxSockets.CreateEventFd();
        LinuxSockets.Register(_epoll, _wake, LinuxSockets.Readable, WakeTag, registered: false);
        new Thread(Run) { IsBackground = true, Name = $"balancer-event-loop-{index}" }.Start();
    }

    /// <summary>This loop's place among the process's loops (0 to one less than the processors).</summary>
    public int Index { get; }

    /// <summary>True when this process has its loops: Linux on x64 or arm64, and the loops could be made.</summary>
    public static bool Available => LinuxSockets.Supported && Loops.Value is not null;

    /// <summary>The next of the process's loops (one a processor), in turn; false where there are none (<see cref="Available"/>).</summary>
    public static bool TryNext([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out EventLoop? loop)
    {
        var loops = LinuxSockets.Supported ? Loops.Value : null;
        loop = loops?[(int)((uint)Interlocked.Increment(ref _nextLoop) % (uint)loops.Length)];
        return loop is not null;
    }

    /// <summary>
    /// A socket connected to <paramref name="endPoint"/> (a name is resolved first, its addresses tried
    /// in turn). A connect that takes longer than <paramref name="timeout"/> fails as a refused one
    /// would (<see cref="SocketError.TimedOut"/>), as <see cref="Routing.BackendConnection"/>'s do.
    /// </summary>
    public async Task<SocketDescriptor> ConnectAsync(EndPoint endPoint, TimeSpan timeout, CancellationToken cancellationToken)
    {
        // The timeout covers the name's resolution too, as .NET's connect does.
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        IPEndPoint[] addresses;
        try
        {
            addresses = endPoint switch
            {
                IPEndPoint ip => [ip],
                DnsEndPoint dns => (await Dns.GetHostAddressesAsync(dns.Host, cancellationToken).WaitAsync(timeout, cancellationToken).ConfigureAwait(false))
                    .Select(a => new IPEndPoint(a, dns.Port)).ToArray(),
                _ => throw new SocketException((int)SocketError.AddressFamilyNotSupported),
            };
        }
        catch (TimeoutException)
        {
            throw new SocketException((int)SocketError.TimedOut);
        }
        var error = (int)SocketError.HostNotFound;
        foreach (var address in addresses)
        {
            var (socket, started) = LinuxSockets.StartConnect(address);
            if (socket is null)
            {
                error = started;
                continue;
            }
            if (started == 0)
            {
                return socket;
            }
            var connecting = new Connecting(socket);
            Post(() => Add(connecting));
            try
            {
                var left = Math.Max(0, deadline - Environment.TickCount64);
                error = await connecting.Done.Task.WaitAsync(TimeSpan.FromMilliseconds(left), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
                Post(() => connecting.End(this, LinuxSockets.Canceled));
                socket.Dispose();
                if (cancellationToken.IsCancellationRequested)
                {
                    throw;
                }
                throw new SocketException((int)SocketError.TimedOut);
            }
            if (error == 0)
            {
                return socket;
            }
            socket.Dispose();
        }
        throw Failure(error);
    }

    /// <summary>
    /// Starts splicing <paramref name="client"/> and <paramref name="backend"/>, sending
    /// <paramref name="toBackendFirst"/> before anything the client sends. The splice ends true when
    /// both directions ended (each end of stream passed on as a half-close), false on an error,
    /// an abort or <paramref name="idleTimeout"/> without a byte either way. The caller disposes the
    /// sockets once it ended.
    /// </summary>
    public Splice Start(SafeHandle client, SafeHandle backend, byte[]? toBackendFirst, TimeSpan idleTimeout) =>
        new(client, backend, toBackendFirst, (long)idleTimeout.TotalMilliseconds);

    /// <summary>Has the loop take <paramref name="splice"/> on (made by <see cref="Start"/>, then published where <see cref="Abort"/> can find it).</summary>
    public void Begin(Splice splice) => Post(() => Add(splice));

    /// <summary>Ends <paramref name="splice"/> (false) unless it has ended.</summary>
    public void Abort(Splice splice) => Post(() => splice.End(this, ok: false));

    private static SocketException Failure(int errno) =>
        errno == (int)SocketError.HostNotFound ? new SocketException(errno) : LinuxSockets.Failure(errno);

    /// <summary>Watches a connected <paramref name="socket"/> for reads and writes its owner makes itself.</summary>
    public LoopSocket Watch(SocketDescriptor socket)
    {
        var watched = new LoopSocket(this, socket);
        Post(() => Add(watched));
        return watched;
    }

    /// <summary>Stops watching <paramref name="registration"/> and lets go of its socket.</summary>
    public void Leave(Registration registration) => Post(() => registration.Fail(this));

    /// <summary>Runs <paramref name="action"/> on the loop's thread.</summary>
    public void Run(Action action) => Post(action);

    /// <summary>Adds, changes or (<paramref name="events"/> 0) removes a descriptor's registration in this loop's set.</summary>
    internal bool Register(int fd, uint events, ulong tag, bool registered) => LinuxSockets.Register(_epoll, fd, events, tag, registered);

    private void Post(Action request)
    {
        _requests.Enqueue(request);
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            LinuxSockets.Signal(_wake);
        }
    }

    private void Run()
    {
        var events = new byte[MaxEvents * LinuxSockets.EventSize];
        var nextSweep = Environment.TickCount64 + SweepMilliseconds;
        while (true)
        {
            var count = LinuxSockets.Wait(_epoll, events, _splices > 0 ? SweepMilliseconds : -1);
            var now = Environment.TickCount64;
            if (count < 0 && LinuxSockets.LastError != LinuxSockets.Interrupted)
            {
                // Not expected of a valid set; rather than spin, wait a moment and go on.
                Thread.Sleep(10);
            }
            for (var i = 0; i < count; i++)
            {
                var tag = LinuxSockets.TagAt(events, i);
                if (tag == WakeTag)
                {
                    LinuxSockets.Drain(_wake);
                    // A full fence: a request queued after this is either seen below or signals again.
                    Interlocked.Exchange(ref _wakePending, 0);
                    continue;
                }
                // A registration ended earlier in this batch has no slot any more (slots are
                // reused only by requests, taken after the batch).
                if (_slots[(int)(tag >> 1)] is { } registration)
                {
                    try
                    {
                        registration.OnEvents(this, LinuxSockets.EventsAt(events, i), backendSide: (tag & 1) != 0, now);
                    }
                    catch (Exception)
                    {
                        // The loop carries every other connection: this one ends, they go on.
                        registration.Fail(this);
                    }
                }
            }
            while (_requests.TryDequeue(out var request))
            {
                try
                {
                    request();
                }
                catch (Exception)
                {
                    // A request that throws (a bug) must not take the loop, and every other connection, with it.
                }
            }
            if (now >= nextSweep)
            {
                nextSweep = now + SweepMilliseconds;
                for (var slot = 0; slot < _slotsUsed; slot++)
                {
                    if (_slots[slot] is Splice splice && now - splice.LastActivity >= splice.IdleMilliseconds)
                    {
                        splice.End(this, ok: false);
                    }
                }
            }
        }
    }

    private void Add(Registration registration)
    {
        if (!registration.TakeHandles())
        {
            registration.Complete(ok: false);
            return;
        }
        int slot;
        if (_freeSlots.Count > 0)
        {
            slot = _freeSlots.Pop();
        }
        else
        {
            if (_slotsUsed == _slots.Length)
            {
                Array.Resize(ref _slots, _slots.Length * 2);
            }
            slot = _slotsUsed++;
        }
        _slots[slot] = registration;
        registration.Slot = slot;
        if (registration is Splice)
        {
            _splices++;
        }
        registration.Started(this);
    }

    private void Remove(Registration registration)
    {
        _slots[registration.Slot] = null;
        _freeSlots.Push(registration.Slot);
        if (registration is Splice)
        {
            _splices--;
        }
    }

    /// <summary>Something the loop watches: one or two descriptors, tagged with its slot and side.</summary>
    internal abstract class Registration
    {
        public int Slot = -1;
        private bool _ended;

        public abstract bool TakeHandles();

        public abstract void Started(EventLoop loop);

        public abstract void OnEvents(EventLoop loop, uint events, bool backendSide, long now);

        public abstract void Complete(bool ok);

        protected abstract void ReleaseAll(EventLoop loop, bool ok);

        public void Fail(EventLoop loop) => EndOnce(loop, ok: false);

        /// <summary>Unregisters, lets go of the handles and completes, once.</summary>
        protected void EndOnce(EventLoop loop, bool ok)
        {
            if (_ended)
            {
                return;
            }
            _ended = true;
            try
            {
                if (Slot >= 0)
                {
                    ReleaseAll(loop, ok);
                }
            }
            finally
            {
                if (Slot >= 0)
                {
                    loop.Remove(this);
                }
                Complete(ok);
            }
        }

        protected static bool AddRef(SafeHandle handle)
        {
            var added = false;
            try
            {
                handle.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
            }
            return added;
        }
    }

    /// <summary>A connect in progress: ends when the socket turns writable (or failed).</summary>
    private sealed class Connecting(SocketDescriptor socket) : Registration
    {
        public readonly TaskCompletionSource<int> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _error = LinuxSockets.Canceled;
        private int Fd => (int)socket.DangerousGetHandle();

        public override bool TakeHandles() => AddRef(socket);

        public override void Started(EventLoop loop)
        {
            if (!LinuxSockets.Register(loop._epoll, Fd, LinuxSockets.Writable, (ulong)Slot << 1, registered: false))
            {
                End(loop, LinuxSockets.LastError);
            }
        }

        public override void OnEvents(EventLoop loop, uint events, bool backendSide, long now) =>
            End(loop, LinuxSockets.ConnectError(Fd));

        public void End(EventLoop loop, int error)
        {
            _error = error;
            EndOnce(loop, error == 0);
        }

        protected override void ReleaseAll(EventLoop loop, bool ok)
        {
            LinuxSockets.Register(loop._epoll, Fd, 0, 0, registered: true);
            socket.DangerousRelease();
        }

        public override void Complete(bool ok) => Done.TrySetResult(ok ? 0 : _error);
    }

    /// <summary>Bytes one way: read from one descriptor, written to the other; what the writer did not take yet.</summary>
    private sealed class Direction
    {
        public int From;
        public int To;
        public byte[]? Pending;
        public bool PendingRented;
        public int PendingStart;
        public int PendingEnd;
        public bool EndOfStream;
        public bool ShutdownSent;

        public bool HasPending => Pending is not null;

        /// <summary>Read only when what was read before has been taken.</summary>
        public bool Reading => !EndOfStream && Pending is null;

        public bool Finished => ShutdownSent;

        public void Keep(byte[] source, int offset, int count, bool rented)
        {
            if (rented)
            {
                Pending = ArrayPool<byte>.Shared.Rent(count);
                Buffer.BlockCopy(source, offset, Pending, 0, count);
                PendingStart = 0;
                PendingEnd = count;
            }
            else
            {
                Pending = source;
                PendingStart = offset;
                PendingEnd = offset + count;
            }
            PendingRented = rented;
        }

        public void LetGo()
        {
            if (Pending is not null && PendingRented)
            {
                ArrayPool<byte>.Shared.Return(Pending);
            }
            Pending = null;
        }
    }

    /// <summary>One client connection spliced to its backend connection.</summary>
    internal sealed class Splice : Registration
    {
        private readonly SafeHandle _client;
        private readonly SafeHandle _backend;
        private readonly Direction _up = new();
        private readonly Direction _down = new();
        private readonly TaskCompletionSource<bool> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private uint _clientEvents;
        private uint _backendEvents;

        public Splice(SafeHandle client, SafeHandle backend, byte[]? toBackendFirst, long idleMilliseconds)
        {
            _client = client;
            _backend = backend;
            IdleMilliseconds = idleMilliseconds;
            if (toBackendFirst is { Length: > 0 })
            {
                _up.Keep(toBackendFirst, 0, toBackendFirst.Length, rented: false);
            }
        }

        public long IdleMilliseconds { get; }

        public long LastActivity;

        /// <summary>True when both directions ended; false on an error, an abort or the idle timeout.</summary>
        public Task<bool> Completion => _done.Task;

        public override bool TakeHandles()
        {
            if (!AddRef(_client))
            {
                return false;
            }
            if (!AddRef(_backend))
            {
                _client.DangerousRelease();
                return false;
            }
            return true;
        }

        public override void Started(EventLoop loop)
        {
            LastActivity = Environment.TickCount64;
            _up.From = _down.To = (int)_client.DangerousGetHandle();
            _up.To = _down.From = (int)_backend.DangerousGetHandle();
            if (!Watch(loop))
            {
                End(loop, ok: false);
            }
        }

        public override void OnEvents(EventLoop loop, uint events, bool backendSide, long now)
        {
            // Data read from this descriptor goes one way; data for it comes the other.
            var from = backendSide ? _down : _up;
            var to = backendSide ? _up : _down;
            var moved = false;
            if (to.HasPending && (events & (LinuxSockets.Writable | LinuxSockets.Error | LinuxSockets.HangUp)) != 0)
            {
                if (!Flush(to))
                {
                    End(loop, ok: false);
                    return;
                }
                moved = true;
            }
            if (from.Reading && (events & (LinuxSockets.Readable | LinuxSockets.Error | LinuxSockets.HangUp)) != 0)
            {
                if (!Pump(loop, from))
                {
                    End(loop, ok: false);
                    return;
                }
                moved = true;
            }
            if (moved)
            {
                LastActivity = now;
            }
            if (_up.Finished && _down.Finished)
            {
                End(loop, ok: true);
            }
            else if (!moved && (events & (LinuxSockets.Error | LinuxSockets.HangUp)) != 0)
            {
                // Nothing to read or write here, and the peer is gone: what the other side still
                // sends could not be delivered.
                End(loop, ok: false);
            }
            else if (!Watch(loop))
            {
                End(loop, ok: false);
            }
        }

        public void End(EventLoop loop, bool ok) => EndOnce(loop, ok);

        public override void Complete(bool ok) => _done.TrySetResult(ok);

        protected override void ReleaseAll(EventLoop loop, bool ok)
        {
            if (!ok)
            {
                // A connection that broke off (a reset, an error, the idle timeout, a stop) ends with
                // a reset on each side still open, as closing .NET's sockets with reads pending did:
                // a clean end of stream would pass a cut-off answer or upload on as whole.
                if (!_down.ShutdownSent)
                {
                    LinuxSockets.ResetOnClose(_up.From);
                }
                if (!_up.ShutdownSent)
                {
                    LinuxSockets.ResetOnClose(_down.From);
                }
            }
            Set(loop, _up.From, ref _clientEvents, 0, backendSide: false);
            Set(loop, _down.From, ref _backendEvents, 0, backendSide: true);
            _up.LetGo();
            _down.LetGo();
            _client.DangerousRelease();
            _backend.DangerousRelease();
        }

        /// <summary>Reads what came and writes it on at once; keeps what was not taken. False on an error.</summary>
        private static bool Pump(EventLoop loop, Direction direction)
        {
            var buffer = loop._buffer;
            var read = LinuxSockets.Receive(direction.From, buffer);
            if (read > 0)
            {
                var sent = LinuxSockets.Send(direction.To, buffer.AsSpan(0, read));
                if (sent < 0)
                {
                    if (LinuxSockets.LastError is not (LinuxSockets.TryAgain or LinuxSockets.Interrupted))
                    {
                        return false;
                    }
                    sent = 0;
                }
                if (sent < read)
                {
                    direction.Keep(buffer, sent, read - sent, rented: true);
                }
                return true;
            }
            if (read == 0)
            {
                direction.EndOfStream = true;
                if (!direction.HasPending)
                {
                    PassEndOfStream(direction);
                }
                return true;
            }
            return LinuxSockets.LastError is LinuxSockets.TryAgain or LinuxSockets.Interrupted;
        }

        /// <summary>Writes what was kept; passes the end of stream on once all is taken. False on an error.</summary>
        private static bool Flush(Direction direction)
        {
            var sent = LinuxSockets.Send(direction.To, direction.Pending.AsSpan(direction.PendingStart..direction.PendingEnd));
            if (sent < 0)
            {
                return LinuxSockets.LastError is LinuxSockets.TryAgain or LinuxSockets.Interrupted;
            }
            direction.PendingStart += sent;
            if (direction.PendingStart == direction.PendingEnd)
            {
                direction.LetGo();
                if (direction.EndOfStream)
                {
                    PassEndOfStream(direction);
                }
            }
            return true;
        }

        private static void PassEndOfStream(Direction direction)
        {
            LinuxSockets.ShutdownSending(direction.To);
            direction.ShutdownSent = true;
        }

        /// <summary>Each descriptor watched for what can move now: reads while its way is clear, writes while something waits for it.</summary>
        private bool Watch(EventLoop loop) =>
            Set(loop, _up.From, ref _clientEvents, (_up.Reading ? LinuxSockets.Readable : 0) | (_down.HasPending ? LinuxSockets.Writable : 0), backendSide: false)
            & Set(loop, _down.From, ref _backendEvents, (_down.Reading ? LinuxSockets.Readable : 0) | (_up.HasPending ? LinuxSockets.Writable : 0), backendSide: true);

        // A descriptor with nothing to wait for leaves the set: level-triggered, a peer's hang-up
        // would be reported on every wait otherwise.
        // False when epoll refused a change the splice needs (a descriptor limit): it cannot go on.
        private bool Set(EventLoop loop, int fd, ref uint current, uint wanted, bool backendSide)
        {
            if (wanted == current)
            {
                return true;
            }
            var taken = LinuxSockets.Register(loop._epoll, fd, wanted, ((ulong)Slot << 1) | (backendSide ? 1UL : 0UL), registered: current != 0);
            current = wanted;
            return taken || wanted == 0;
        }
    }
}
