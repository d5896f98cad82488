using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Routing;

/// <summary>What the routing actor knows about one backend besides its configuration.</summary>
/// <param name="AdminState">The operator's state.</param>
/// <param name="Healthy">False when an active check or passive ejection says down.</param>
/// <param name="Weight">A weight set at runtime, replacing the configured one.</param>
/// <param name="SlowStartFactor">Share of its weight a returning backend gets now, 0..1.</param>
/// <param name="HealthReason">Why its health last changed ("" before any change).</param>
public sealed record BackendRuntimeState(
    BackendAdminState AdminState = BackendAdminState.Ready,
    bool Healthy = true,
    int? Weight = null,
    double SlowStartFactor = 1.0,
    string HealthReason = "")
{
    /// <summary>A ready, healthy backend at its configured weight.</summary>
    public static readonly BackendRuntimeState Default = new();
}

/// <summary>Builds a <see cref="PoolSnapshot"/> from configuration and runtime state; a pure function.</summary>
public static class PoolSnapshotBuilder
{
    /// <summary>
    /// Builds the snapshot: routable backends are the ready, healthy ones with a weight above zero;
    /// when their share falls below the pool's panic threshold, every backend not in maintenance is
    /// routable instead, so a few survivors are not crushed by the whole load.
    /// </summary>
    public static PoolSnapshot Build(
        long version,
        PoolSettings settings,
        Func<string, BackendRuntimeState> stateOf,
        Func<string, BackendCounters> countersOf,
        AlgorithmState algorithmState)
    {
        // Hashing algorithms keep their tables during slow start: scaling weights would remap keys.
        var scalesWeight = settings.Algorithm is not (Algorithms.ConsistentHash or Algorithms.Maglev);
        var all = ImmutableArray.CreateBuilder<Backend>(settings.Backends.Length);
        foreach (var configured in settings.Backends)
        {
            var state = stateOf(configured.Name);
            var backendSettings = state.Weight is { } runtimeWeight ? configured with { Weight = runtimeWeight } : configured;
            var weight = backendSettings.Weight;
            var slowStart = scalesWeight ? Math.Clamp(state.SlowStartFactor, 0, 1) : 1.0;
            if (weight > 0 && slowStart < 1)
            {
                weight = Math.Max(1, (int)Math.Round(weight * slowStart));
            }
            all.Add(new Backend(settings.Name, backendSettings, weight, state.AdminState, state.Healthy, countersOf(configured.Name), slowStart, state.HealthReason, settings.UsesTls));
        }
        var backends = all.MoveToImmutable();

        var routable = backends.Where(b => b.AdminState == BackendAdminState.Ready && b.Healthy && b.Weight > 0).ToImmutableArray();
        var candidates = backends.Count(b => b.AdminState == BackendAdminState.Ready && b.Weight > 0);
        var panic = false;
        if (candidates > 0 && routable.Length < candidates && (double)routable.Length / candidates < settings.PanicThreshold)
        {
            panic = true;
            routable = backends.Where(b => b.AdminState != BackendAdminState.Maint && b.Weight > 0).ToImmutableArray();
        }

        var algorithm = Algorithms.Create(settings.Algorithm, routable, settings.HashKey, algorithmState);
        var admitsBySlowStart = settings.Algorithm is Algorithms.RoundRobin or Algorithms.First;
        return new PoolSnapshot(version, settings, backends, routable, panic, algorithm, admitsBySlowStart ? algorithmState.Random : null);
    }
}
