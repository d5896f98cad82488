using System.Net;
using Akka.Actor;
using Balancer.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balancer.Frontends;

/// <summary>
/// The Kestrel servers of a node (each HTTP frontend, the admin API), built alike: no host
/// defaults, Kestrel's and ASP.NET Core's own warnings in the ActorSystem's log, no Server header.
/// </summary>
internal static class KestrelHosting
{
    /// <summary>An empty application builder for the server named <paramref name="name"/>, with Kestrel and the node's logging.</summary>
    public static WebApplicationBuilder CreateBuilder(string name, ActorSystem system) =>
        CreateBuilder(name, category => Akka.Event.Logging.GetLogger(system, category));

    /// <summary>As above, logging through <paramref name="loggerFor"/> (a category's Akka logger).</summary>
    public static WebApplicationBuilder CreateBuilder(string name, Func<string, Akka.Event.ILoggingAdapter> loggerFor)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = name });
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new AkkaLoggerProvider(loggerFor, LogLevel.Warning));
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
        return builder;
    }

    /// <summary>Starts <paramref name="app"/> and returns the addresses it listens on (port 0 resolved).</summary>
    public static async Task<IReadOnlyList<IPEndPoint>> StartAsync(WebApplication app, CancellationToken cancellationToken)
    {
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        // Kestrel reports "http://127.0.0.1:8080" or "http://[::1]:8080".
        return addresses
            .Select(url => new Uri(url))
            .Select(uri => IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? new IPEndPoint(ip, uri.Port) : null)
            .OfType<IPEndPoint>()
            .ToList();
    }

    /// <summary>Stops <paramref name="app"/>, letting requests in flight finish for at most <paramref name="grace"/>.</summary>
    public static async Task StopAsync(WebApplication app, TimeSpan grace)
    {
        using var cancel = new CancellationTokenSource(grace);
        await app.StopAsync(cancel.Token).ConfigureAwait(false);
    }
}
