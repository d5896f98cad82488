using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing;

internal sealed partial class PoolRouter
{
    /// <summary>Replace the pool's configuration (backends, weights, algorithm); a new snapshot follows.</summary>
    public sealed record UpdateSettings(PoolSettings Settings);

    /// <summary>Set a backend's admin state; answered with <see cref="Akka.Actor.Status.Success"/> or a failure naming the problem.</summary>
    public sealed record SetAdminState(string Backend, BackendAdminState State);

    /// <summary>Set a backend's weight at runtime (0..10000); answered like <see cref="SetAdminState"/>.</summary>
    public sealed record SetWeight(string Backend, int Weight);

    /// <summary>An active health check's verdict changed (sent by the backend's HealthProbe).</summary>
    public sealed record BackendProbed(string Backend, bool Up, string Reason);

    /// <summary>Asks for the current snapshot; answered with <see cref="PoolSnapshot"/>.</summary>
    public sealed class GetSnapshot
    {
        public static readonly GetSnapshot Instance = new();
        private GetSnapshot() { }
    }

    /// <summary>The periodic fold of passive health and slow start.</summary>
    private sealed class Tick
    {
        public static readonly Tick Instance = new();
        private Tick() { }
    }
}

/// <summary>Published on the EventStream when a pool's configuration changes.</summary>
public sealed record PoolConfigChanged(string Pool, long Version, PoolSettings Settings);
