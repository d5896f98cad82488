using Balancer.Affinity;
using Balancer.Frontends;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Management;

/// <summary>One pool as <c>GET /api/pools</c> shows it.</summary>
public sealed record PoolView(
    string Name,
    string Algorithm,
    string Affinity,
    int Backends,
    int Healthy,
    int Routable,
    bool Panic,
    long Requests,
    long InFlight,
    long Retries,
    int? AffinityEntries)
{
    internal static PoolView Of(PoolHandle handle)
    {
        var snapshot = handle.Snapshot;
        return new PoolView(
            snapshot.Name,
            snapshot.Settings.Algorithm,
            AdminText.Affinity(snapshot.Settings.Affinity),
            snapshot.Backends.Length,
            snapshot.Backends.Count(b => b.Healthy),
            snapshot.Routable.Length,
            snapshot.Panic,
            snapshot.Backends.Sum(b => b.Counters.Requests),
            snapshot.Backends.Sum(b => b.Counters.InFlight),
            handle.Retries,
            handle.Affinity?.Count);
    }
}

/// <summary>One backend as <c>GET /api/pools/{pool}/backends</c> shows it.</summary>
public sealed record BackendView(
    string Pool,
    string Name,
    string Address,
    string Health,
    string AdminState,
    int Weight,
    int ConfiguredWeight,
    double SlowStart,
    long InFlight,
    long Requests,
    long ConnectFailures,
    long ResponseFailures,
    long Ejections,
    IReadOnlyDictionary<string, long> Responses,
    string HealthReason,
    IReadOnlyList<double> LatencyBoundsSeconds,
    IReadOnlyList<long> LatencyHistogram)
{
    internal static BackendView Of(Backend backend) => new(
        backend.Pool,
        backend.Name,
        backend.Address.ToString(),
        backend.Healthy ? "up" : "down",
        AdminText.State(backend.AdminState),
        backend.Weight,
        backend.ConfiguredWeight,
        Math.Round(backend.SlowStartFactor, 3),
        backend.Counters.InFlight,
        backend.Counters.Requests,
        backend.Counters.ConnectFailures,
        backend.Counters.ResponseFailures,
        backend.Counters.Ejections,
        Enumerable.Range(1, 5).ToDictionary(c => $"{c}xx", c => backend.Counters.Responses(c)),
        backend.HealthReason,
        BackendCounters.LatencyBoundsSeconds,
        backend.Counters.LatencyHistogram());
}

/// <summary>One frontend as <c>GET /api/frontends</c> shows it.</summary>
public sealed record FrontendView(string Name, string Mode, string Pool, IReadOnlyList<string> Bind, IReadOnlyList<string> Listening, long Accepted, long Open, long Refused, long Tunnels = 0, IReadOnlyList<string>? Routes = null, long FastPath = 0)
{
    internal static FrontendView Of(Configuration.FrontendSettings frontend, FrontendCounters counters) => new(
        frontend.Name,
        frontend.Mode.ToString().ToLowerInvariant(),
        frontend.Pool,
        frontend.Bind.Select(b => b.ToString()).ToList(),
        counters.Listening.Select(e => e.ToString()).ToList(),
        counters.Accepted,
        counters.Open,
        counters.Refused,
        counters.Tunnels,
        frontend.Routes.Select(r => r.Name + " → " + r.Pool).ToList(),
        counters.FastPath);
}

/// <summary>A session pinned to a backend, as <c>GET /api/pools/{pool}/affinity</c> shows it.</summary>
public sealed record AffinityEntryView(string Key, string Backend, DateTimeOffset ExpiresAt, bool Established);

/// <summary>A pool's affinity table on this node.</summary>
public sealed record AffinityView(string Pool, string Mode, string Write, int Entries, IReadOnlyList<AffinityEntryView> Shown);

/// <summary>A mutation's answer.</summary>
public sealed record ChangeResult(string Result);

/// <summary>Body of <c>POST /api/cluster/{join|leave|down}</c>.</summary>
public sealed record MemberRequest(string? Address);

/// <summary>Body of <c>POST .../state</c>: ready, drain or maint.</summary>
public sealed record StateRequest(string? State);

/// <summary>Body of <c>POST .../weight</c>.</summary>
public sealed record WeightRequest(int? Weight);

/// <summary>Body of <c>POST /api/pools/{pool}/backends/{id}</c> (add a backend).</summary>
public sealed record AddBackendRequest(string? Address, int? Weight);

internal static class AdminText
{
    public static string State(BackendAdminState state) => state.ToString().ToLowerInvariant();

    public static string Affinity(Configuration.AffinitySettings affinity) => affinity.Mode switch
    {
        Configuration.AffinityMode.None => "none",
        Configuration.AffinityMode.Cookie => "cookie",
        Configuration.AffinityMode.SourceIp => "source-ip",
        Configuration.AffinityMode.Header => "header:" + affinity.KeyName,
        Configuration.AffinityMode.LearnCookie => "learn-cookie:" + affinity.KeyName,
        _ => affinity.Mode.ToString(),
    };

    public static AffinityEntryView View(ulong hash, AffinityEntry entry) => new(AffinityEndpoints.HashPrefix + hash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture), entry.Backend, entry.ExpiresAt, entry.Established);
}
