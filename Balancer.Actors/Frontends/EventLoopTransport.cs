using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Balancer.Frontends;

/// <summary>
/// Kestrel's transport on Balancer's own event loops: a client connection of an HTTP frontend is
/// read and written on the same loop thread as its backend connections (<see cref="LoopSocket"/>),
/// where Kestrel's socket transport reads it through .NET's sockets (a read that finds nothing
/// before each wait, and .NET's own event thread beside the loops).
/// <para>
/// It behaves as Kestrel's socket transport with inline scheduling: the pipes' continuations run
/// where the data arrived, a connection waits for data before it takes a buffer, 1 MB of unread
/// request and 64 KB of unsent response pause their writer, a graceful end sends a FIN and an
/// abort a reset, and a connection is closed once it ended both ways.
/// </para>
/// </summary>
internal sealed class EventLoopTransport : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private const int Backlog = 512;
    private static long _accepted;

    private readonly Func<EndPoint, Socket> _bind;
    private readonly MemoryPool<byte> _memoryPool;

    /// <param name="bind">Makes the bound (not yet listening) socket for an address.</param>
    /// <param name="memoryPools">Kestrel's pool of pinned blocks, where the host has it.</param>
    public EventLoopTransport(Func<EndPoint, Socket> bind, IMemoryPoolFactory<byte>? memoryPools)
    {
        _bind = bind;
        _memoryPool = memoryPools?.Create(new MemoryPoolOptions { Owner = "balancer-event-loop" }) ?? MemoryPool<byte>.Shared;
    }

    /// <summary>Client connections this process took through the transport: where it runs, and where it was not chosen, is told by it.</summary>
    public static long Accepted => Interlocked.Read(ref _accepted);

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    /// <summary>Called by the server's container when it is disposed: the pool made for it goes too.</summary>
    public void Dispose()
    {
        if (_memoryPool != MemoryPool<byte>.Shared)
        {
            _memoryPool.Dispose();
        }
    }

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        Socket socket;
        try
        {
            socket = _bind(endpoint);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            // As Kestrel's socket transport reports it, so that Kestrel names the address.
            throw new AddressInUseException(e.Message, e);
        }
        try
        {
            socket.Listen(Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new ValueTask<IConnectionListener>(new Listener(socket, _memoryPool));
    }

    private sealed class Listener(Socket socket, MemoryPool<byte> memoryPool) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (ObjectDisposedException)
                {
                    return null;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
                {
                    return null;
                }
                catch (SocketException)
                {
                    // Reset while it waited in the backlog: take the next one.
                    continue;
                }
                if (!EventLoop.TryNext(out var loop))
                {
                    accepted.Dispose();
                    return null;
                }
                EventLoopConnection connection;
                SocketDescriptor? descriptor = null;
                try
                {
                    accepted.NoDelay = true;
                    // The loop owns a descriptor of its own; .NET's socket is closed at once, so that
                    // nothing of .NET's (its close waiting for the loop to let go) is left to race the loop.
                    descriptor = LinuxSockets.Duplicate(accepted.SafeHandle);
                    if (descriptor is null)
                    {
                        // Out of descriptors: this connection is refused, the next may be taken.
                        continue;
                    }
                    connection = new EventLoopConnection(descriptor, accepted.LocalEndPoint, accepted.RemoteEndPoint, loop, memoryPool);
                }
                catch (SocketException)
                {
                    // Reset before it could be set up.
                    descriptor?.Dispose();
                    continue;
                }
                finally
                {
                    accepted.Dispose();
                }
                connection.Start();
                Interlocked.Increment(ref _accepted);
                return connection;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return default;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return default;
        }
    }
}

/// <summary>One client connection of <see cref="EventLoopTransport"/>: a receive loop and a send loop between its socket and Kestrel's pipes.</summary>
internal sealed class EventLoopConnection : ConnectionContext,
    IConnectionIdFeature, IConnectionTransportFeature, IConnectionItemsFeature, IConnectionLifetimeFeature, IConnectionEndPointFeature, IMemoryPoolFeature
{
    // Kestrel's socket transport's defaults (MaxReadBufferSize, MaxWriteBufferSize).
    private const long MaxUnread = 1024 * 1024;
    private const long MaxUnsent = 64 * 1024;
    private const int MinimumReceive = 2048;
    private static long _lastId;

    private readonly LoopSocket _loopSocket;
    private readonly PipeWriter _received;
    private readonly PipeReader _toSend;
    // Kestrel's side of the pipes as made: a middleware may set Transport to pipes of its own.
    private readonly IDuplexPipe _application;
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _closedFired = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _shutdownLock = new();
    private bool _shutDown;
    private volatile Exception? _shutdownReason;
    private Task _running = Task.CompletedTask;
    private string? _id;
    private IDictionary<object, object?>? _items;

    public EventLoopConnection(SocketDescriptor socket, EndPoint? localEndPoint, EndPoint? remoteEndPoint, EventLoop loop, MemoryPool<byte> memoryPool)
    {
        LocalEndPoint = localEndPoint;
        RemoteEndPoint = remoteEndPoint;
        MemoryPool = memoryPool;
        var input = new Pipe(new PipeOptions(memoryPool, PipeScheduler.Inline, PipeScheduler.Inline, MaxUnread, MaxUnread / 2, useSynchronizationContext: false));
        var output = new Pipe(new PipeOptions(memoryPool, PipeScheduler.Inline, PipeScheduler.Inline, MaxUnsent, MaxUnsent / 2, useSynchronizationContext: false));
        Transport = _application = new DuplexPipe(input.Reader, output.Writer);
        _received = input.Writer;
        _toSend = output.Reader;
        ConnectionClosed = _closed.Token;
        Features = new FeatureCollection();
        Features.Set<IConnectionIdFeature>(this);
        Features.Set<IConnectionTransportFeature>(this);
        Features.Set<IConnectionItemsFeature>(this);
        Features.Set<IConnectionLifetimeFeature>(this);
        Features.Set<IConnectionEndPointFeature>(this);
        Features.Set<IMemoryPoolFeature>(this);
        _loopSocket = loop.Watch(socket);
    }

    public override string ConnectionId
    {
        get => _id ??= "balancer-" + Interlocked.Increment(ref _lastId).ToString("x", System.Globalization.CultureInfo.InvariantCulture);
        set => _id = value;
    }

    public override IFeatureCollection Features { get; }

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new Dictionary<object, object?>();
        set => _items = value;
    }

    public override IDuplexPipe Transport { get; set; }

    public override CancellationToken ConnectionClosed { get; set; }

    public override EndPoint? LocalEndPoint { get; set; }

    public override EndPoint? RemoteEndPoint { get; set; }

    public MemoryPool<byte> MemoryPool { get; }

    /// <summary>The loop the connection is read and written on (its backend connections are best made there too).</summary>
    public EventLoop Loop => _loopSocket.Loop;

    public void Start() => _running = RunAsync();

    public override void Abort(ConnectionAbortedException abortReason)
    {
        Shutdown(abortReason);
        // The send loop ends now, not at the next response.
        _toSend.CancelPendingRead();
    }

    /// <summary>Called by Kestrel once the connection's middleware ended (so ConnectionClosed fired).</summary>
    public override async ValueTask DisposeAsync()
    {
        await _application.Input.CompleteAsync().ConfigureAwait(false);
        await _application.Output.CompleteAsync().ConfigureAwait(false);
        await _running.ConfigureAwait(false);
        _closed.Dispose();
    }

    private async Task RunAsync()
    {
        var receiving = ReceiveAsync();
        var sending = SendAsync();
        try
        {
            await receiving.ConfigureAwait(false);
            await sending.ConfigureAwait(false);
        }
        finally
        {
            // Only now, with neither loop left to call it: a descriptor closed while one of them
            // could still read or write it might be another connection's by then.
            _loopSocket.Dispose();
        }
    }

    private async Task ReceiveAsync()
    {
        Exception? error = null;
        try
        {
            while (true)
            {
                // No buffer is taken until something came: an idle connection holds none.
                await _loopSocket.WaitToReceiveAsync().ConfigureAwait(false);
                var buffer = _received.GetMemory(MinimumReceive);
                var read = await _loopSocket.ReceiveAsync(buffer).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }
                _received.Advance(read);
                var flushed = await _received.FlushAsync().ConfigureAwait(false);
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown)
        {
            error = new ConnectionResetException(e.Message, e);
        }
        catch (ObjectDisposedException e)
        {
            // After a shutdown the reason below says why; else the loop let go of the socket (it
            // could not watch it), which ends the connection as an abort would.
            error = new ConnectionAbortedException("The event loop stopped watching the connection.", e);
        }
        catch (Exception e)
        {
            error = e;
        }
        finally
        {
            await _received.CompleteAsync(_shutdownReason ?? error).ConfigureAwait(false);
            FireConnectionClosed();
            await _closedFired.Task.ConfigureAwait(false);
        }
    }

    private async Task SendAsync()
    {
        Exception? reason = null;
        Exception? unexpected = null;
        try
        {
            while (true)
            {
                var result = await _toSend.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    break;
                }
                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    var left = segment;
                    while (!left.IsEmpty)
                    {
                        left = left[await _loopSocket.SendAsync(left).ConfigureAwait(false)..];
                    }
                }
                _toSend.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown)
        {
            reason = new ConnectionResetException(e.Message, e);
        }
        catch (ObjectDisposedException e)
        {
            // Shut down by an abort: its reason stands.
            reason = e;
        }
        catch (Exception e)
        {
            reason = e;
            unexpected = e;
        }
        finally
        {
            Shutdown(reason);
            await _toSend.CompleteAsync(unexpected).ConfigureAwait(false);
            // A receive loop paused on a full pipe ends too.
            _received.CancelPendingFlush();
        }
    }

    /// <summary>
    /// Ends the connection, once: with a FIN when the response side completed (<paramref name="reason"/>
    /// null), else with a reset, as Kestrel's socket transport does, so that a response cut off
    /// does not look whole to the client. Both loops end; the socket is closed after them.
    /// </summary>
    private void Shutdown(Exception? reason)
    {
        lock (_shutdownLock)
        {
            if (_shutDown)
            {
                return;
            }
            _shutDown = true;
            // Null only when the response side completed gracefully: nobody but a middleware
            // trying to half-close would see it.
            _shutdownReason = reason ?? new ConnectionAbortedException("The event loop transport's send loop completed gracefully.");
        }
        if (reason is null)
        {
            _loopSocket.Shutdown();
        }
        else
        {
            _loopSocket.ResetOnClose();
        }
        _loopSocket.Stop();
    }

    /// <summary>Called once, when the receive side ended.</summary>
    private void FireConnectionClosed()
    {
        // Off the loop's thread: whatever registered on the token runs there, not in the loop.
        ThreadPool.UnsafeQueueUserWorkItem(static self =>
        {
            try
            {
                self._closed.Cancel();
            }
            catch (Exception)
            {
                // A callback registered on the token threw: the connection still ends, and the
                // process must not (an exception here would escape a thread-pool item).
            }
            finally
            {
                self._closedFired.TrySetResult();
            }
        }, this, preferLocal: false);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
