using System.Net;
using Balancer.Configuration;

namespace Balancer.Model;

/// <summary>The administrative state of a backend, set by an operator.</summary>
public enum BackendAdminState
{
    /// <summary>Takes traffic.</summary>
    Ready,
    /// <summary>No new sessions or connections; existing affinity and open connections continue.</summary>
    Drain,
    /// <summary>No traffic at all; probes keep running.</summary>
    Maint,
}

/// <summary>
/// A backend as one <see cref="PoolSnapshot"/> sees it: immutable, except for the shared
/// <see cref="Counters"/>.
/// </summary>
public sealed class Backend
{
    /// <summary>Creates the view of a backend.</summary>
    public Backend(string pool, BackendSettings settings, int effectiveWeight, BackendAdminState adminState, bool healthy, BackendCounters counters, double slowStartFactor = 1.0, string healthReason = "", bool tls = false)
    {
        HealthReason = healthReason;
        SlowStartFactor = slowStartFactor;
        Pool = pool;
        Name = settings.Name;
        Address = settings.Address;
        ConfiguredWeight = settings.Weight;
        Weight = effectiveWeight;
        AdminState = adminState;
        Healthy = healthy;
        Counters = counters;
        DestinationPrefix = $"{(tls ? "https" : "http")}://{settings.Address}/";
        EndPoint = settings.Address.IPEndPoint is { } ip ? ip : new DnsEndPoint(settings.Address.Host, settings.Address.Port);
    }

    /// <summary>Why its health last changed, e.g. "health check: 2 check(s) failed, last: HTTP 503" ("" before any change).</summary>
    public string HealthReason { get; }

    /// <summary>Name of the pool the backend belongs to.</summary>
    public string Pool { get; }

    /// <summary>Name of the backend within its pool.</summary>
    public string Name { get; }

    /// <summary>Where the backend listens.</summary>
    public EndpointAddress Address { get; }

    /// <summary>The weight in the configuration.</summary>
    public int ConfiguredWeight { get; }

    /// <summary>The weight routing uses now (slow start ramps it up).</summary>
    public int Weight { get; }

    /// <summary>The operator's state for the backend.</summary>
    public BackendAdminState AdminState { get; }

    /// <summary>False when health checks or passive ejection took the backend out.</summary>
    public bool Healthy { get; }

    /// <summary>Below 1 while the backend ramps up after coming back (slow start).</summary>
    public double SlowStartFactor { get; }

    /// <summary>Traffic counters shared by every snapshot.</summary>
    public BackendCounters Counters { get; }

    /// <summary>"http://HOST:PORT/" ("https://" for a pool with TLS to its backends), the prefix YARP forwards to.</summary>
    public string DestinationPrefix { get; }

    /// <summary>The socket address the TCP frontend connects to.</summary>
    public EndPoint EndPoint { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Pool}/{Name} ({Address})";
}
