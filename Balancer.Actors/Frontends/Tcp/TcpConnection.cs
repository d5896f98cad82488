using System.Buffers;
using System.Net.Sockets;
using Akka.Event;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Frontends.Tcp;

/// <summary>
/// One client connection of a TCP frontend: connect to a backend (another one on refusal), then copy
/// bytes both ways, on a <see cref="EventLoop"/> (Linux, <c>event-loop = on</c>) or
/// with .NET's async sockets and pooled buffers. End of stream in one direction is passed on as a
/// half-close; an error in either direction closes both; no byte for <c>idle-timeout</c> closes both.
/// </summary>
internal sealed class TcpConnection
{
    private const int BufferSize = 16 * 1024;

    private readonly Socket _client;
    private readonly Func<string?, PoolHandle?>? _sniRoutes;
    private readonly TimeSpan _helloTimeout;
    private PoolHandle _pool;
    private readonly TimeSpan _idleTimeout;
    private readonly ILoggingAdapter _log;
    private readonly string _frontend;
    private Socket? _backendSocket;
    // Set when the event loop splices: the loop, the backend socket it connected, the splice.
    private readonly EventLoop? _loop;
    private SocketDescriptor? _backendDescriptor;
    private EventLoop.Splice? _splice;
    private long _lastActivity;
    // How the connection found its backend, for its span.
    private int _attempts;
    private string _affinity = "none";
    private int _aborted;

    public TcpConnection(Socket client, PoolHandle pool, TimeSpan idleTimeout, ILoggingAdapter log, string frontend,
        Func<string?, PoolHandle?>? sniRoutes = null, TimeSpan helloTimeout = default, bool eventLoop = false)
    {
        _loop = eventLoop && EventLoop.TryNext(out var loop) ? loop : null;
        _sniRoutes = sniRoutes;
        _helloTimeout = helloTimeout == default ? TimeSpan.FromSeconds(10) : helloTimeout;
        _client = client;
        _pool = pool;
        _idleTimeout = idleTimeout;
        _log = log;
        _frontend = frontend;
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        var lease = default(BackendLease);
        using var activity = Telemetry.BalancerTracing.StartConnection(_frontend, _pool.Name);
        try
        {
            byte[]? hello = null;
            if (_sniRoutes is not null)
            {
                (hello, var serverName) = await ClientHello.ReadAsync(_client, _helloTimeout, stopping).ConfigureAwait(false);
                if (hello is null)
                {
                    return;
                }
                _pool = _sniRoutes(serverName) ?? _pool;
                if (activity is not null)
                {
                    activity.DisplayName = "tcp " + _pool.Name;
                    activity.SetTag("balancer.pool", _pool.Name);
                }
            }
            lease = await ConnectAsync(stopping).ConfigureAwait(false);
            Telemetry.BalancerTracing.Served(activity, lease.Backend?.Name, _attempts, _affinity);
            if (!lease.HasBackend)
            {
                return;
            }
            // What was read to route the connection is the start of the backend's TLS handshake.
            if (_loop is not null)
            {
                var splice = _loop.Start(_client.SafeHandle, _backendDescriptor!, hello, _idleTimeout);
                // Published before the loop takes it, with full fences on both sides: a Close()
                // either finds it here or has set _aborted before this reads it.
                Interlocked.Exchange(ref _splice, splice);
                _loop.Begin(splice);
                if (Volatile.Read(ref _aborted) != 0)
                {
                    _loop.Abort(splice);
                }
                await splice.Completion.ConfigureAwait(false);
                return;
            }
            if (hello is not null)
            {
                await _backendSocket!.SendAsync(hello, SocketFlags.None, stopping).ConfigureAwait(false);
            }
            await SpliceAsync(_client, _backendSocket!).ConfigureAwait(false);
        }
        finally
        {
            // How a spliced connection ends (idle timeout, a client reset) says nothing about the
            // backend; passive health counts the connects that fail.
            lease.Complete(BackendOutcome.Abandoned);
            Volatile.Write(ref _aborted, 1);
            DisposeSockets();
        }
    }

    /// <summary>
    /// Ends the connection: closes both sockets, or, on an event loop, has the loop end its splice
    /// (the sockets are closed once it did; before the splice, the stop token ends the wait for the
    /// TLS hello, the connect or the session's pin).
    /// </summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }
        if (_loop is not null)
        {
            // Disposing a socket the loop still reads would wait for the loop to let go of it.
            if (Volatile.Read(ref _splice) is { } splice)
            {
                _loop.Abort(splice);
            }
            return;
        }
        DisposeSockets();
    }

    private void DisposeSockets()
    {
        _client.Dispose();
        _backendSocket?.Dispose();
        _backendDescriptor?.Dispose();
    }

    private async Task<BackendLease> ConnectAsync(CancellationToken stopping)
    {
        // Source-IP affinity is the one kind a TCP connection carries.
        var selection = await BackendSelection.StartAsync(_pool, new RoutingRequest((_client.RemoteEndPoint as System.Net.IPEndPoint)?.Address)).ConfigureAwait(false);
        _affinity = selection.AffinityOutcome;
        while (selection.Next() is { Backend: { } backend } lease)
        {
            _attempts = selection.Attempts;
            try
            {
                if (_loop is not null)
                {
                    _backendDescriptor = await _loop.ConnectAsync(backend.EndPoint, selection.Snapshot.Settings.ConnectTimeout, stopping).ConfigureAwait(false);
                }
                else
                {
                    _backendSocket = await BackendConnection.ConnectAsync(backend.EndPoint, selection.Snapshot.Settings.ConnectTimeout, stopping).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                lease.Complete(BackendOutcome.ConnectFailed);
                if (stopping.IsCancellationRequested)
                {
                    return default;
                }
                _log.Debug("tcp frontend {0}: connect to {1} failed: {2}", _frontend, backend, e.Message);
                continue;
            }
            // A connection is its backend's answer: the session is pinned before any byte flows.
            await lease.PinSessionAsync(stopping).ConfigureAwait(false);
            return lease;
        }
        _log.Warning("tcp frontend {0}: no backend of pool {1} accepted the connection from {2}",
            _frontend, selection.Snapshot.Name, _client.RemoteEndPoint);
        return default;
    }

    private async Task SpliceAsync(Socket client, Socket backend)
    {
        Touch();
        using var idle = new CancellationTokenSource();
        var upstream = PumpAsync(client, backend);
        var downstream = PumpAsync(backend, client);
        var watchdog = WatchIdleAsync(idle.Token);
        var first = await Task.WhenAny(upstream, downstream).ConfigureAwait(false);
        if (!await first.ConfigureAwait(false))
        {
            // One direction broke: the other cannot finish meaningfully.
            Close();
        }
        await Task.WhenAll(upstream, downstream).ConfigureAwait(false);
        idle.Cancel();
        await watchdog.ConfigureAwait(false);
    }

    /// <summary>Copies until end of stream (passed on as a half-close: true) or an error (false).</summary>
    private async Task<bool> PumpAsync(Socket from, Socket to)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return true;
                }
                Touch();
                var sent = 0;
                while (sent < read)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task WatchIdleAsync(CancellationToken done)
    {
        var period = TimeSpan.FromMilliseconds(Math.Clamp(_idleTimeout.TotalMilliseconds / 4, 50, 30_000));
        try
        {
            while (!done.IsCancellationRequested)
            {
                await Task.Delay(period, done).ConfigureAwait(false);
                var idleFor = Environment.TickCount64 - Volatile.Read(ref _lastActivity);
                if (idleFor >= _idleTimeout.TotalMilliseconds)
                {
                    _log.Debug("tcp frontend {0}: closing connection idle for {1} ms", _frontend, idleFor);
                    Close();
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void Touch() => Volatile.Write(ref _lastActivity, Environment.TickCount64);
}
