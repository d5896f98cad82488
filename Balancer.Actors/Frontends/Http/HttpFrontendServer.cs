using System.Net;
using Akka.Actor;
using Balancer.Configuration;
using Balancer.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace Balancer.Frontends.Http;

/// <summary>An HTTP frontend: a Kestrel server per frontend whose only middleware is <see cref="HttpProxy"/>.</summary>
internal sealed class HttpFrontendServer : IFrontendServer
{
    private readonly WebApplication _app;
    private readonly FrontendSettings _settings;
    private readonly CertificateStore? _certificates;
    private readonly List<System.Net.Sockets.Socket> _listeners = new();
    private IReadOnlyList<IPEndPoint> _bound = Array.Empty<IPEndPoint>();

    public HttpFrontendServer(FrontendSettings settings, PoolHandle pool, PoolRegistry pools, FrontendCounters counters, DataPlane dataPlane)
    {
        _settings = settings;
        var perClient = new ClientConnectionLimit(settings.MaxConnectionsPerClient, counters);
        _certificates = settings.Tls is { } tls ? new CertificateStore(tls, dataPlane.Log("balancer.tls")) : null;
        // Plain HTTP/1.1 in cleartext: the fast path takes what it can (Http1FastPath).
        var fastPath = _certificates is null && settings.Protocols != HttpProtocolsSetting.Http2 && settings.Http1FastPath;
        var builder = KestrelHosting.CreateBuilder("balancer-" + settings.Name, dataPlane.Log);
        builder.Services.AddHttpForwarder();
        if (fastPath && settings.EventLoop && EventLoop.Available)
        {
            // Its client connections on the event loops too, beside their backend connections: one
            // thread takes a request and its answer both ways (bench/README.md).
            builder.Services.AddSingleton<IConnectionListenerFactory>(services =>
                new EventLoopTransport(endPoint => BindListener(endPoint, settings.ReusePort), services.GetService<IMemoryPoolFactory<byte>>()));
        }
        builder.WebHost.UseSockets(sockets =>
        {
            // Where the fast path runs, a request's work continues on the thread whose socket
            // completed, not after a hop to the thread pool: nothing on its path blocks, and the hop
            // was a tenth of its CPU a request (bench/README.md, "Where an HTTP request's CPU goes").
            // A TLS frontend keeps the hop: its handshakes are CPU work that would hold up every
            // other connection of that thread.
            sockets.UnsafePreferInlineScheduling = fastPath;
            sockets.CreateBoundListenSocket = endPoint => BindListener(endPoint, settings.ReusePort);
        });
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Cleartext HTTP/2 (prior knowledge) goes through as if negotiated by ALPN; its
            // requests' :scheme is then http, which Kestrel takes only with this.
            kestrel.AllowAlternateSchemes = _certificates is null && settings.Protocols == HttpProtocolsSetting.Http1AndHttp2;
            kestrel.Limits.MaxConcurrentConnections = settings.MaxConnections;
            kestrel.Limits.MaxConcurrentUpgradedConnections = settings.MaxConnections;
            // A proxy streams bodies through; capping them is the backend's decision.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.KeepAliveTimeout = settings.IdleTimeout;
            kestrel.Limits.RequestHeadersTimeout = settings.RequestHeadersTimeout;
            kestrel.Limits.MaxRequestHeadersTotalSize = settings.MaxRequestHeaderBytes;
            kestrel.Limits.MaxRequestHeaderCount = settings.MaxRequestHeaders;
            kestrel.Limits.MaxRequestLineSize = settings.MaxRequestLineBytes;
            kestrel.Limits.MinRequestBodyDataRate = settings.MinRequestBodyBytesPerSecond == 0
                ? null
                : new MinDataRate(settings.MinRequestBodyBytesPerSecond, TimeSpan.FromSeconds(5));
            foreach (var bind in settings.Bind)
            {
                kestrel.Listen(ListenSockets.Resolve(bind), listen =>
                {
                    listen.Protocols = settings.Protocols switch
                    {
                        HttpProtocolsSetting.Http1 => HttpProtocols.Http1,
                        HttpProtocolsSetting.Http2 => HttpProtocols.Http2,
                        _ => HttpProtocols.Http1AndHttp2,
                    };
                    if (settings.MaxConnectionsPerClient > 0)
                    {
                        // Before the TLS handshake: a refused client costs no cryptography.
                        listen.Use(next => connection => perClient.Admit(connection.RemoteEndPoint) is { } admitted
                            ? RunAdmitted(next, connection, admitted)
                            : Task.CompletedTask);
                    }
                    // Kestrel enforces RequestHeadersTimeout on its 1 s heartbeat plus a heartbeat of
                    // grace (a slow client lasts 1-2 s longer than configured); this deadline cuts a
                    // connection whose first request has not arrived in time, to the configured value.
                    listen.Use(next => connection => FirstRequestDeadline.RunAsync(next, connection, settings.RequestHeadersTimeout));
                    if (_certificates is null && settings.Protocols == HttpProtocolsSetting.Http1AndHttp2)
                    {
                        listen.Use(next => connection => CleartextHttp2.RunAsync(next, connection));
                    }
                    if (fastPath)
                    {
                        // Innermost: it sees the bytes of each request just before Kestrel's HTTP/1.1 parser would.
                        listen.Use(next => connection => _fastPath!.RunAsync(next, connection));
                    }
                    if (_certificates is { } certificates)
                    {
                        listen.UseHttps(new Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions
                        {
                            ServerCertificateSelector = (_, serverName) => certificates.Select(serverName),
                            HandshakeTimeout = settings.RequestHeadersTimeout,
                        });
                    }
                });
            }
        });
        _app = builder.Build();
        _routesLog = dataPlane.Log("balancer.routes");
        _proxy = new HttpProxy(settings, RouteTable.Build(settings, pools, pool, _routesLog), counters, _app.Services.GetRequiredService<IHttpForwarder>());
        _fastPath = fastPath ? new Http1FastPath(settings, _proxy, counters) : null;
        _app.Run(_proxy.ForwardAsync);
    }

    /// <summary>A bound listening socket, kept so that a stop can stop admitting on it first.</summary>
    private System.Net.Sockets.Socket BindListener(EndPoint endPoint, bool reusePort)
    {
        var listener = ListenSockets.CreateBound(endPoint, reusePort);
        lock (_listeners)
        {
            _listeners.Add(listener);
        }
        return listener;
    }

    private readonly HttpProxy _proxy;
    private readonly Http1FastPath? _fastPath;
    private readonly Akka.Event.ILoggingAdapter _routesLog;

    /// <inheritdoc />
    public void Reconfigure(FrontendSettings settings, PoolRegistry pools) =>
        _proxy.Reconfigure(settings, RouteTable.Build(settings, pools, pools.Find(settings.Pool) ?? throw new InvalidOperationException($"frontend {settings.Name}: pool {settings.Pool} is not registered"), _routesLog));

    public IReadOnlyList<IPEndPoint> BoundEndPoints => _bound;

    private static async Task RunAdmitted(Microsoft.AspNetCore.Connections.ConnectionDelegate next, Microsoft.AspNetCore.Connections.ConnectionContext connection, IDisposable admitted)
    {
        using (admitted)
        {
            await next(connection);
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken) => _bound = await KestrelHosting.StartAsync(_app, cancellationToken);

    public async Task StopAsync(TimeSpan grace, Action? unbound = null)
    {
        System.Net.Sockets.Socket[] listeners;
        lock (_listeners)
        {
            listeners = _listeners.ToArray();
        }
        await ListenSockets.StopAdmittingAsync(listeners, ListenSockets.AdmittingStopsWithin(grace)).ConfigureAwait(false);
        var stopped = KestrelHosting.StopAsync(_app, grace);
        if (unbound is not null)
        {
            // Kestrel unbinds first and then waits for the connections: once its listening sockets
            // are closed, the addresses are free for a successor while those connections finish.
            await WaitUntilClosedAsync(listeners, stopped).ConfigureAwait(false);
            unbound();
        }
        await stopped.ConfigureAwait(false);
    }

    private static async Task WaitUntilClosedAsync(System.Net.Sockets.Socket[] listeners, Task stopped)
    {
        while (!stopped.IsCompleted && listeners.Any(IsOpen))
        {
            await Task.WhenAny(stopped, Task.Delay(10)).ConfigureAwait(false);
        }
    }

    private static bool IsOpen(System.Net.Sockets.Socket socket)
    {
        try
        {
            return socket.Handle != IntPtr.Zero && socket.IsBound && socket.LocalEndPoint is not null && !socket.SafeHandle.IsClosed;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    public ValueTask DisposeAsync()
    {
        _certificates?.Dispose();
        _fastPath?.Dispose();
        return _app.DisposeAsync();
    }

    public override string ToString() => $"http frontend {_settings.Name}";
}
