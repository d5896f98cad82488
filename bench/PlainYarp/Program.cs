// Plain YARP reverse proxy: the .NET baseline for bench/run.sh.
//
//   PlainYarp --listen 127.0.0.1:18090 --backend http://127.0.0.1:19001 --backend http://127.0.0.1:19002
//
// One shared HttpMessageInvoker, IHttpForwarder with HttpTransformer.Default (adds X-Forwarded-*),
// round-robin over the backends, nothing else (no routing config, no health checks, no retries).

using System.Net;
using Yarp.ReverseProxy.Forwarder;

string? listen = null;
var backends = new List<string>();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--listen" when i + 1 < args.Length:
            listen = args[++i];
            break;
        case "--backend" when i + 1 < args.Length:
            backends.Add(args[++i].TrimEnd('/') + "/");
            break;
        default:
            Console.Error.WriteLine($"unknown or incomplete argument: {args[i]}");
            Console.Error.WriteLine("usage: PlainYarp --listen HOST:PORT --backend http://HOST:PORT [--backend ...]");
            return 2;
    }
}

if (listen is null || backends.Count == 0 || !IPEndPoint.TryParse(listen, out var endPoint) || endPoint.Port == 0)
{
    Console.Error.WriteLine("usage: PlainYarp --listen HOST:PORT --backend http://HOST:PORT [--backend ...]");
    return 2;
}

// Empty args: the command line above is ours, not configuration keys.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
builder.Logging.ClearProviders();
builder.Logging.AddConsole();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.WebHost.ConfigureKestrel(o =>
{
    o.AddServerHeader = false;
    o.Listen(endPoint);
});
builder.Services.AddHttpForwarder();

var app = builder.Build();

var invoker = new HttpMessageInvoker(new SocketsHttpHandler
{
    UseProxy = false,
    AllowAutoRedirect = false,
    AutomaticDecompression = DecompressionMethods.None,
    UseCookies = false,
    EnableMultipleHttp2Connections = true,
    ActivityHeadersPropagator = null,
    ConnectTimeout = TimeSpan.FromSeconds(15),
});
var requestConfig = ForwarderRequestConfig.Empty;
var destinations = backends.ToArray();
var next = -1;

app.Map("/{**catch-all}", async (HttpContext context, IHttpForwarder forwarder) =>
{
    var index = (int)((uint)Interlocked.Increment(ref next) % (uint)destinations.Length);
    // Errors are logged by the forwarder itself (warning level) and answered with 502/504.
    await forwarder.SendAsync(context, destinations[index], invoker, requestConfig, HttpTransformer.Default);
});

Console.WriteLine($"PlainYarp listening on {endPoint}, backends: {string.Join(", ", destinations)}");
app.Run();
return 0;
