using System.Buffers;
using System.Net.Sockets;
using Akka.Event;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Frontends.Tcp;

/// <summary>
/// One client connection of a TCP frontend: connect to a backend (another one on refusal), then copy
/// bytes both ways with pooled buffers. End of stream in one direction is passed on as a half-close;
/// an error in either direction closes both; no byte for <c>idle-timeout</c> closes both.
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
    private long _lastActivity;
    private int _aborted;

    public TcpConnection(Socket client, PoolHandle pool, TimeSpan idleTimeout, ILoggingAdapter log, string frontend,
        Func<string?, PoolHandle?>? sniRoutes = null, TimeSpan helloTimeout = default)
    {
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
        Backend? backend = null;
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
            }
            backend = await ConnectAsync(stopping).ConfigureAwait(false);
            if (backend is null)
            {
                return;
            }
            if (hello is not null)
            {
                // What was read to route the connection is the start of the backend's TLS handshake.
                await _backendSocket!.SendAsync(hello, SocketFlags.None, stopping).ConfigureAwait(false);
            }
            await SpliceAsync(_client, _backendSocket!).ConfigureAwait(false);
        }
        finally
        {
            // How a spliced connection ends (idle timeout, a client reset) says nothing about the
            // backend; passive health counts the connects that fail.
            backend?.Counters.End();
            Close();
        }
    }

    /// <summary>Closes both sockets, ending the splice.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }
        _client.Dispose();
        _backendSocket?.Dispose();
    }

    private async Task<Backend?> ConnectAsync(CancellationToken stopping)
    {
        var snapshot = _pool.Snapshot;
        var request = new RoutingRequest((_client.RemoteEndPoint as System.Net.IPEndPoint)?.Address);
        var attempted = new AttemptedBackends();
        var attemptsAllowed = 1 + snapshot.Settings.Retries;
        // Source-IP affinity is the one kind a TCP frontend can see.
        var affinity = _pool.Affinity is { Settings.Mode: Configuration.AffinityMode.SourceIp } table ? table : null;
        var sessionKey = affinity is null ? null : request.ClientAddress?.ToString();
        var pinnedName = sessionKey is null ? null : await affinity!.FindAsync(sessionKey).ConfigureAwait(false);
        if (ReferenceEquals(pinnedName, Affinity.AffinityTable.Unavailable))
        {
            // The table could not be read: balance without pinning, so the session's entry survives.
            sessionKey = null;
            pinnedName = null;
        }
        var pinned = snapshot.FindForSession(pinnedName);
        var tries = 0;
        while (tries < attemptsAllowed)
        {
            var backend = snapshot.Select(in request, ref attempted, pinned);
            tries++;
            if (backend is not null && affinity is not null && sessionKey is not null && backend != pinned)
            {
                await affinity.Pin(sessionKey, backend.Name).WaitAsync(affinity.WriteTimeout, stopping).ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
            }
            if (backend is null)
            {
                break;
            }
            if (tries > 1)
            {
                _pool.CountRetry();
            }
            backend.Counters.Start();
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            timeout.CancelAfter(snapshot.Settings.ConnectTimeout);
            try
            {
                await socket.ConnectAsync(backend.EndPoint, timeout.Token).ConfigureAwait(false);
                _backendSocket = socket;
                return backend;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                backend.Counters.ConnectFailed();
                if (stopping.IsCancellationRequested)
                {
                    return null;
                }
                _log.Debug("tcp frontend {0}: connect to {1} failed: {2}", _frontend, backend, e.Message);
            }
        }
        _log.Warning("tcp frontend {0}: no backend of pool {1} accepted the connection from {2}",
            _frontend, snapshot.Name, _client.RemoteEndPoint);
        return null;
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
