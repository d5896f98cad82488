using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Routing;

/// <summary>What the routing actor knows about one backend besides its configuration.</summary>
public sealed record BackendRuntimeState(BackendAdminState AdminState = BackendAdminState.Ready, bool Healthy = true, double WeightFactor = 1.0)
{
    /// <summary>A ready, healthy backend at full weight.</summary>
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
        PickerState pickerState)
    {
        var all = ImmutableArray.CreateBuilder<Backend>(settings.Backends.Length);
        foreach (var backendSettings in settings.Backends)
        {
            var state = stateOf(backendSettings.Name);
            var weight = backendSettings.Weight == 0 ? 0 : Math.Max(1, (int)Math.Round(backendSettings.Weight * state.WeightFactor));
            all.Add(new Backend(settings.Name, backendSettings, weight, state.AdminState, state.Healthy, countersOf(backendSettings.Name)));
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

        var picker = LoadBalancingPolicies.Create(settings.Algorithm, routable, settings.HashKey, pickerState);
        return new PoolSnapshot(version, settings, backends, routable, panic, picker);
    }
}
