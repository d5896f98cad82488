using System.Net;

namespace Balancer.Frontends;

/// <summary>The listeners of one frontend; opened and closed by its <see cref="FrontendActor"/>.</summary>
internal interface IFrontendServer : IAsyncDisposable
{
    /// <summary>Binds every address and starts accepting; fails if any address cannot be bound.</summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Stops accepting and closes open connections, waiting at most <paramref name="grace"/> for them;
    /// <paramref name="unbound"/> is called as soon as the listeners are closed (their addresses free).
    /// </summary>
    Task StopAsync(TimeSpan grace, Action? unbound = null);

    /// <summary>
    /// A reload changed only what applies per request or connection (<see cref="Configuration.ConfigurationChange.FrontendSettingsAppliedInPlace"/>):
    /// the next ones go by <paramref name="settings"/>; the listeners and open connections stay.
    /// </summary>
    void Reconfigure(Configuration.FrontendSettings settings, Routing.PoolRegistry pools);

    /// <summary>The addresses actually bound (port 0 resolved).</summary>
    IReadOnlyList<IPEndPoint> BoundEndPoints { get; }
}
