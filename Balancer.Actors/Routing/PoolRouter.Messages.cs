using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing;

internal sealed partial class PoolRouter
{
    /// <summary>Replace the pool's configuration (backends, weights, algorithm); a new snapshot follows.</summary>
    public sealed record UpdateSettings(PoolSettings Settings);

    /// <summary>Set a backend's admin state and/or weight factor at runtime.</summary>
    public sealed record SetBackendState(string Backend, BackendRuntimeState State);

    /// <summary>Asks for the current snapshot; answered with <see cref="PoolSnapshot"/>.</summary>
    public sealed class GetSnapshot
    {
        public static readonly GetSnapshot Instance = new();
        private GetSnapshot() { }
    }
}

/// <summary>Published on the EventStream when a pool's configuration changes.</summary>
public sealed record PoolConfigChanged(string Pool, long Version, PoolSettings Settings);
