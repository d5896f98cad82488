using System.Collections.Immutable;

namespace Balancer.Configuration;

/// <summary>
/// The configuration published to the whole cluster (<c>ctl config apply FILE</c>): HOCON that every
/// node lays over its own files, replicated and stored durably, newest version wins. It holds only
/// what must be the same on every node (<see cref="ClusterWideKeys"/>); a node's own addresses,
/// data directory, certificates and admin settings stay in its files.
/// </summary>
/// <param name="Version">1 for the first published, one more for each after it.</param>
/// <param name="Text">The HOCON as published.</param>
/// <param name="PublishedBy">The node it was published through.</param>
/// <param name="PublishedAt">When.</param>
/// <param name="Fingerprint">The fingerprint of the pools it made on the node it was published through.</param>
/// <param name="Changes">What it changed on that node, a line each.</param>
/// <param name="History">The versions before it, newest first (at most <see cref="HistoryLength"/>), with what each changed.</param>
public sealed record ClusterConfiguration(
    long Version,
    string Text,
    string PublishedBy,
    DateTimeOffset PublishedAt,
    string Fingerprint,
    ImmutableArray<string> Changes,
    ImmutableArray<ClusterConfigurationVersion> History)
{
    /// <summary>How many earlier versions a configuration remembers.</summary>
    public const int HistoryLength = 20;

    /// <summary>How many lines of what a version changed are kept with it.</summary>
    public const int ChangesKept = 20;

    /// <summary>The largest text published: it travels in one replicated value.</summary>
    public const int MaxTextBytes = 32 * 1024;

    /// <summary>The keys under <c>balancer</c> a cluster configuration may set: pools, frontends and their defaults.</summary>
    public static readonly IReadOnlySet<string> ClusterWideKeys = new HashSet<string>(StringComparer.Ordinal)
    {
        "pools", "frontends", "pool-defaults", "frontend-defaults", "backend-defaults", "route-defaults",
    };

    /// <summary>This version as the history keeps it.</summary>
    public ClusterConfigurationVersion AsVersion() => new(Version, PublishedBy, PublishedAt, Fingerprint, Changes);

    /// <summary>The versions that <c>ctl config history</c> lists: this one, then the earlier ones.</summary>
    public IEnumerable<ClusterConfigurationVersion> Versions => History.Prepend(AsVersion());
}

/// <summary>One published version, as the history keeps it.</summary>
/// <param name="Version">Its number.</param>
/// <param name="PublishedBy">The node it was published through.</param>
/// <param name="PublishedAt">When.</param>
/// <param name="Fingerprint">The fingerprint of the pools it made on that node.</param>
/// <param name="Changes">What it changed on that node, a line each.</param>
public sealed record ClusterConfigurationVersion(long Version, string PublishedBy, DateTimeOffset PublishedAt, string Fingerprint, ImmutableArray<string> Changes);

/// <summary>
/// What one node runs, as it tells the others (replicated under its address): the cluster
/// configuration version it applied (0: its files alone) and the fingerprint of its pools.
/// </summary>
public sealed record RunningConfiguration(long Version, string Fingerprint, DateTimeOffset AppliedAt);

/// <summary>
/// What this node knows of the cluster's configuration, for the admin API and <c>cluster show</c>:
/// the published version and what each member runs; replaced whole by the actor that follows them.
/// </summary>
public sealed class ConfigurationStatus
{
    private Snapshot _current = new(null, ImmutableDictionary<string, RunningConfiguration>.Empty, ImmutableHashSet<string>.Empty, null);

    /// <summary>The state at one moment.</summary>
    /// <param name="Cluster">The newest published configuration; null when none was.</param>
    /// <param name="Running">What each member runs, by address.</param>
    /// <param name="Drifting">Members whose pools differ from what most members run.</param>
    /// <param name="Applied">The version this node applied (null: its files alone), which a reload of its files lays over them again.</param>
    public sealed record Snapshot(ClusterConfiguration? Cluster, ImmutableDictionary<string, RunningConfiguration> Running, ImmutableHashSet<string> Drifting, ClusterConfiguration? Applied)
    {
        /// <summary>The version this node applied (0: its files alone).</summary>
        public long AppliedVersion => Applied?.Version ?? 0;
    }

    /// <summary>The state now.</summary>
    public Snapshot Current => Volatile.Read(ref _current);

    internal void Publish(Snapshot snapshot) => Volatile.Write(ref _current, snapshot);

    /// <summary>
    /// The members whose fingerprint differs from the one most of <paramref name="members"/> run (ties
    /// go to the fingerprint of the newest version); members that said nothing yet are not judged.
    /// </summary>
    public static ImmutableHashSet<string> Drift(IReadOnlyDictionary<string, RunningConfiguration> running, IReadOnlyCollection<string> members)
    {
        var known = members.Where(running.ContainsKey).Select(m => (Member: m, Running: running[m])).ToList();
        if (known.Count < 2)
        {
            return ImmutableHashSet<string>.Empty;
        }
        var common = known.GroupBy(k => k.Running.Fingerprint)
            .OrderByDescending(g => g.Count())
            .ThenByDescending(g => g.Max(k => k.Running.Version))
            .First().Key;
        return known.Where(k => k.Running.Fingerprint != common).Select(k => k.Member).ToImmutableHashSet();
    }
}
