using System.Net;
using System.Text;
using Balancer.Frontends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balancer.Node.Backend;

/// <summary>
/// A real Kestrel HTTP backend for demos and tests. Every response carries <c>X-Backend: NAME</c>.
/// <list type="bullet">
/// <item><c>GET /</c> (any other path): the name and the path in the body.</item>
/// <item><c>GET /healthz</c>: 200, or 503 after <c>POST /control/health?ok=false</c>.</item>
/// <item><c>POST /control/slow?ms=N</c>: adds N ms of latency to every response.</item>
/// <item><c>/echo</c>: the request body back, streamed.</item>
/// <item><c>GET /headers</c>: the request headers, one "Name: value" per line.</item>
/// <item><c>GET /login</c>: sets a new <c>JSESSIONID</c> cookie, as an application server would.</item>
/// <item><c>GET /bytes?n=N[&amp;chunked=1]</c>: N bytes, chunked when asked.</item>
/// <item><c>/ws</c>: a WebSocket that says "hello from NAME", then echoes every message.</item>
/// <item>gRPC service <c>balancer.demo.Demo</c> (<c>demo.proto</c>): one method of each call kind.</item>
/// </list>
/// HTTP/1.1 and HTTP/2 on one port: by ALPN with TLS, by the connection preface in cleartext.
/// </summary>
internal sealed class DemoBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _name;
    private readonly double _failRate;
    private volatile bool _healthy = true;
    private int _latencyMs;

    public DemoBackend(string name, IPEndPoint listen, int latencyMs = 0, double failRate = 0, DemoBackendTls? tls = null)
    {
        _name = name;
        _latencyMs = latencyMs;
        _failRate = failRate;
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "balancer-backend-" + name });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = null;
            k.AllowAlternateSchemes = tls is null;
            k.Listen(listen, options =>
            {
                options.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1AndHttp2;
                if (tls is null)
                {
                    options.Use(next => connection => Balancer.Frontends.Http.CleartextHttp2.RunAsync(next, connection));
                    return;
                }
                options.UseHttps(https =>
                {
                    https.ServerCertificate = tls.Certificate;
                    if (tls.ClientAuthority is { } authority)
                    {
                        https.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate;
                        https.ClientCertificateValidation = (certificate, _, _) => Configuration.Certificates.IssuedBy(certificate, authority);
                    }
                });
            });
        });
        builder.Services.AddRoutingCore();
        builder.Services.AddLogging();
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(new DemoGrpcService(name));
        _app = builder.Build();
        _app.UseWebSockets();
        _app.Use(async (context, next) =>
        {
            context.Response.Headers["X-Backend"] = _name;
            var latency = Volatile.Read(ref _latencyMs);
            if (latency > 0)
            {
                await Task.Delay(latency, context.RequestAborted);
            }
            await next(context);
        });
        _app.MapGet("/healthz", (HttpContext context) =>
        {
            context.Response.StatusCode = _healthy ? 200 : 503;
            return context.Response.WriteAsync(_healthy ? "ok\n" : "unhealthy\n");
        });
        _app.MapPost("/control/health", (HttpContext context) =>
        {
            var ok = context.Request.Query["ok"].ToString();
            if (ok is not ("true" or "false"))
            {
                context.Response.StatusCode = 400;
                return context.Response.WriteAsync("ok must be true or false\n");
            }
            _healthy = ok == "true";
            return context.Response.WriteAsync($"{_name} healthy={_healthy}\n");
        });
        _app.Map("/control/slow", (HttpContext context) =>
        {
            if (!int.TryParse(context.Request.Query["ms"], out var ms) || ms < 0 || ms > 600_000)
            {
                context.Response.StatusCode = 400;
                return context.Response.WriteAsync("ms must be a whole number from 0 to 600000\n");
            }
            Volatile.Write(ref _latencyMs, ms);
            return context.Response.WriteAsync($"{_name} latency={ms}ms\n");
        });
        _app.Map("/echo", async (HttpContext context) =>
        {
            context.Response.ContentType = context.Request.ContentType ?? "application/octet-stream";
            await context.Request.Body.CopyToAsync(context.Response.Body, context.RequestAborted);
        });
        // Answers with the status it is asked for, so clients can see every response class pass through.
        _app.Map("/status/{code:int}", (HttpContext context, int code) =>
        {
            context.Response.StatusCode = code is >= 200 and <= 599 ? code : 400;
            return Task.CompletedTask;
        });
        _app.MapGet("/login", (HttpContext context) =>
        {
            // An application session, as a Java servlet container would set it.
            var session = Guid.NewGuid().ToString("N");
            context.Response.Headers.Append("Set-Cookie", $"JSESSIONID={session}; Path=/; HttpOnly");
            return context.Response.WriteAsync($"{_name} session {session}\n");
        });
        _app.MapGet("/headers", (HttpContext context) =>
        {
            var text = new StringBuilder();
            foreach (var (key, value) in context.Request.Headers)
            {
                text.Append(key).Append(": ").Append(value.ToString()).Append('\n');
            }
            return context.Response.WriteAsync(text.ToString());
        });
        _app.MapGet("/bytes", async (HttpContext context) =>
        {
            if (!int.TryParse(context.Request.Query["n"], out var n) || n < 0)
            {
                context.Response.StatusCode = 400;
                await context.Response.WriteAsync("n must be a non-negative whole number\n");
                return;
            }
            var chunked = context.Request.Query["chunked"] == "1";
            if (!chunked)
            {
                context.Response.ContentLength = n;
            }
            var block = new byte[16 * 1024];
            for (var i = 0; i < block.Length; i++)
            {
                block[i] = (byte)('a' + i % 26);
            }
            for (var sent = 0; sent < n; sent += block.Length)
            {
                await context.Response.Body.WriteAsync(block.AsMemory(0, Math.Min(block.Length, n - sent)), context.RequestAborted);
                if (chunked)
                {
                    await context.Response.Body.FlushAsync(context.RequestAborted);
                }
            }
        });
        _app.MapGrpcService<DemoGrpcService>();
        _app.Map("/ws", async (HttpContext context) =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = 400;
                await context.Response.WriteAsync("a WebSocket upgrade is expected here\n");
                return;
            }
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[16 * 1024];
            await socket.SendAsync(Encoding.UTF8.GetBytes($"hello from {_name}"), System.Net.WebSockets.WebSocketMessageType.Text, true, context.RequestAborted);
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, context.RequestAborted);
                if (received.MessageType == System.Net.WebSockets.WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, context.RequestAborted);
                    return;
                }
                await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, context.RequestAborted);
            }
        });
        _app.MapFallback(context =>
        {
            if (_failRate > 0 && Random.Shared.NextDouble() < _failRate)
            {
                context.Response.StatusCode = 500;
                return context.Response.WriteAsync($"{_name} failed (fail-rate)\n");
            }
            context.Response.ContentType = "text/plain; charset=utf-8";
            return context.Response.WriteAsync($"{_name} {context.Request.Path}\n");
        });
    }

    public string Name => _name;

    /// <summary>The port actually bound (useful with port 0).</summary>
    public int Port { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        Port = (await KestrelHosting.StartAsync(_app, cancellationToken))[0].Port;
    }

    public Task StopAsync() => KestrelHosting.StopAsync(_app, TimeSpan.FromSeconds(2));

    public ValueTask DisposeAsync() => _app.DisposeAsync();
}

/// <summary>TLS on a demo backend: its certificate, and the CA whose client certificates it requires (mTLS), if any.</summary>
internal sealed record DemoBackendTls(System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate, System.Security.Cryptography.X509Certificates.X509Certificate2? ClientAuthority);
