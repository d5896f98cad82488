using System.Net;
using System.Net.Sockets;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Routing;

namespace Balancer.Frontends.Tcp;

/// <summary>
/// A TCP frontend: one accept loop per bind address; each client connection is spliced to a backend
/// connection by a <see cref="TcpConnection"/>. Beyond <c>max-connections</c> new clients are closed at once.
/// </summary>
internal sealed class TcpFrontendServer : IFrontendServer
{
    private readonly FrontendSettings _settings;
    // Swapped whole by a reload; each connection reads it once, when accepted.
    private volatile Routing _routing;

    /// <summary>Where a connection goes: the frontend's pool, or the pool its TLS server name selects.</summary>
    private sealed record Routing(PoolHandle Pool, Func<string?, PoolHandle?>? SniRoutes);
    private readonly ILoggingAdapter _log;
    private readonly List<Socket> _listeners = new();
    private readonly List<Task> _acceptLoops = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly FrontendCounters _counters;
    private readonly ClientConnectionLimit _perClient;

    public TcpFrontendServer(FrontendSettings settings, PoolHandle pool, FrontendCounters counters, ILoggingAdapter log, PoolRegistry? pools = null)
    {
        _counters = counters;
        _perClient = new ClientConnectionLimit(settings.MaxConnectionsPerClient, counters);
        _settings = settings;
        _routing = RoutingOf(settings, pool, pools);
        _log = log;
    }

    private static Routing RoutingOf(FrontendSettings settings, PoolHandle pool, PoolRegistry? pools)
    {
        if (settings.SniRoutes.Length == 0 || pools is null)
        {
            return new Routing(pool, null);
        }
        var routes = settings.SniRoutes;
        return new Routing(pool, serverName => serverName is null
            ? null
            : routes.FirstOrDefault(r => HostNames.Matches(r.ServerName, serverName)) is { } route ? pools.Find(route.Pool) : null);
    }

    /// <inheritdoc />
    public void Reconfigure(FrontendSettings settings, PoolRegistry pools) =>
        _routing = RoutingOf(settings, pools.Find(settings.Pool) ?? throw new InvalidOperationException($"frontend {settings.Name}: pool {settings.Pool} is not registered"), pools);

    public IReadOnlyList<IPEndPoint> BoundEndPoints => _listeners.Select(l => (IPEndPoint)l.LocalEndPoint!).ToList();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            foreach (var bind in _settings.Bind)
            {
                var listener = ListenSockets.CreateBound(ListenSockets.Resolve(bind), _settings.ReusePort);
                _listeners.Add(listener);
                listener.Listen(512);
            }
        }
        catch
        {
            foreach (var listener in _listeners)
            {
                listener.Dispose();
            }
            _listeners.Clear();
            throw;
        }
        if (_settings.EventLoop && OperatingSystem.IsLinux() && !EventLoop.Available)
        {
            _log.Warning("tcp frontend {0}: Balancer's event loops could not be made on this system; connections are spliced with .NET's sockets", _settings.Name);
        }
        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(TimeSpan grace, Action? unbound = null)
    {
        await ListenSockets.StopAdmittingAsync(_listeners, ListenSockets.AdmittingStopsWithin(grace)).ConfigureAwait(false);
        _stopping.Cancel();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }
        unbound?.Invoke();
        await Task.WhenAll(_acceptLoops).WaitAsync(grace).ConfigureAwait(false);
        var deadline = Environment.TickCount64 + (long)grace.TotalMilliseconds;
        while (_counters.Open > 0 && Environment.TickCount64 < deadline)
        {
            await Task.Delay(50).ConfigureAwait(false);
        }
        _closing.Cancel();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopping.IsCancellationRequested)
        {
            await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        }
        _stopping.Dispose();
        _closing.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // EMFILE and friends: keep the listener alive rather than lose the frontend.
                _log.Warning("tcp frontend {0}: accept failed: {1}", _settings.Name, e.SocketErrorCode);
                await Task.Delay(10).ConfigureAwait(false);
                continue;
            }

            if (_counters.Accept() > _settings.MaxConnections)
            {
                _counters.Refuse();
                client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }
            var admitted = _perClient.Admit(client.RemoteEndPoint);
            if (admitted is null)
            {
                _counters.Close();
                client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }
            client.NoDelay = true;
            _ = HandleAsync(client, admitted);
        }
    }

    private async Task HandleAsync(Socket client, IDisposable admitted)
    {
        using var releaseOnEnd = admitted;
        var remote = client.RemoteEndPoint;
        var routing = _routing;
        try
        {
            var connection = new TcpConnection(client, routing.Pool, _settings.IdleTimeout, _log, _settings.Name, routing.SniRoutes, _settings.RequestHeadersTimeout, _settings.EventLoop);
            // Stopping the frontend closes connections still open after the grace period.
            await using var closeOnStop = _closing.Token.Register(static c => ((TcpConnection)c!).Close(), connection);
            await connection.RunAsync(_closing.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.Warning("tcp frontend {0}: connection from {1} ended with {2}", _settings.Name, remote, e.Message);
        }
        finally
        {
            _counters.Close();
        }
    }

    public override string ToString() => $"tcp frontend {_settings.Name}";
}
