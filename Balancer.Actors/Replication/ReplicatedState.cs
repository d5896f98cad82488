using Akka.DistributedData;
using Balancer.Model;

namespace Balancer.Replication;

/// <summary>
/// One probe's verdict on one backend, as replicated in <see cref="ReplicatedKeys.Health"/> under
/// "POOL/BACKEND/NODE" so that every prober's view is kept apart and can be merged.
/// <paramref name="Sequence"/> orders the verdicts on one backend without trusting clocks: a prober
/// numbers its verdict one above the highest it has seen for that backend, so a later verdict wins
/// over an earlier one even from a node whose clock is ahead (0 in records of older nodes).
/// </summary>
public sealed record HealthRecord(string Pool, string Backend, string Node, bool Up, string Reason, DateTimeOffset CheckedAt, long Sequence = 0)
{
    /// <summary>A value in a format this node cannot read (a newer node wrote it): carried as it came, never used.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public OpaqueValue? Opaque { get; init; }
}

/// <summary>
/// A replicated value in a newer format than this node reads: its manifest and bytes, kept so that
/// the rest of its dictionary still replicates during a rolling upgrade, and written back unchanged
/// so that the newer nodes never see it degraded.
/// </summary>
public sealed record OpaqueValue(string Manifest, byte[] Bytes);

/// <summary>
/// Runtime changes to one backend, replicated in <see cref="ReplicatedKeys.RuntimeConfig"/> under
/// "POOL/BACKEND" and stored durably: an operator's admin state and weight, a backend added at
/// runtime (with its address) or removed.
/// </summary>
public sealed record BackendOverride(
    string Pool,
    string Backend,
    string? Address,
    int? Weight,
    BackendAdminState? AdminState,
    bool Removed,
    DateTimeOffset ChangedAt)
{
    /// <summary>A value in a format this node cannot read (a newer node wrote it): carried as it came, never used.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public OpaqueValue? Opaque { get; init; }

    /// <summary>The replicated map key of a backend.</summary>
    public static string KeyOf(string pool, string backend) => pool + "/" + backend;
}

/// <summary>The Akka.DistributedData keys Balancer replicates.</summary>
public static class ReplicatedKeys
{
    /// <summary>Backends added or removed at runtime, weights and admin states; durable.</summary>
    public static readonly LWWDictionaryKey<string, BackendOverride> RuntimeConfig = new("balancer-runtime-config");

    /// <summary>Probe verdicts per backend and probing node.</summary>
    public static readonly LWWDictionaryKey<string, HealthRecord> Health = new("balancer-health");

    /// <summary>The cluster's generated affinity key (cookie signatures, session hashes), when <c>balancer.node.affinity-key</c> is empty.</summary>
    public static readonly LWWRegisterKey<string> AffinityKey = new("balancer-affinity-key");

    /// <summary>
    /// The <c>buckets</c> keys of a pool's session table, <c>balancer-sessions-POOL-N</c> (an earlier
    /// version, which kept keys in clear, used <c>balancer-affinity-POOL-N</c>).
    /// </summary>
    public static Affinity.AffinityBucketKey[] AffinityBuckets(Configuration.PoolSettings pool) =>
        Enumerable.Range(0, pool.Affinity.Buckets)
            .Select(n => new Affinity.AffinityBucketKey($"balancer-sessions-{pool.Name}-{n}"))
            .ToArray();

    /// <summary>The configuration published to the whole cluster (<c>ctl config apply</c>), newest version wins; durable.</summary>
    public static readonly LWWRegisterKey<Configuration.ClusterConfiguration> ClusterConfiguration = new("balancer-cluster-config");

    /// <summary>What each member runs (the version it applied, the fingerprint of its pools), by address.</summary>
    public static readonly LWWDictionaryKey<string, Configuration.RunningConfiguration> RunningConfigurations = new("balancer-running-config");

    /// <summary>The map key of one prober's verdict on a backend.</summary>
    public static string HealthKeyOf(string pool, string backend, string node) => $"{pool}/{backend}/{node}";
}
