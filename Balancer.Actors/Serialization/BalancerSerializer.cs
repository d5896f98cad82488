using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Event;
using Akka.Serialization;
using Balancer.Health;
using Balancer.Replication;

namespace Balancer.Serialization;

/// <summary>
/// Serializes every message Balancer sends between nodes and every value it replicates under a
/// versioned manifest: compact JSON, and affinity buckets in their own binary format
/// (<see cref="AffinityBucketFormat"/>). A manifest this node does not know (a newer node's message) or a
/// payload over <see cref="MaxPayloadBytes"/> is refused with a <see cref="SerializationException"/>,
/// which Akka logs and drops: it never takes the node down. A replicated value in a newer version
/// of a known kind (<c>health-record/2</c>) is not refused: it becomes an <see cref="OpaqueValue"/>
/// that its dictionary carries and replicates unchanged and that this node skips, so one newer
/// entry cannot stop a whole dictionary from replicating during a rolling upgrade.
/// </summary>
public sealed class BalancerSerializer : SerializerWithStringManifest
{
    /// <summary>The identifier bound in reference.conf.</summary>
    public const int Id = 1591;

    /// <summary>Larger payloads are refused: no Balancer message comes near it.</summary>
    public const int MaxPayloadBytes = 64 * 1024;

    internal const string HealthRecordManifest = "health-record/1";
    internal const string BackendOverrideManifest = "backend-override/1";
    internal const string EnsureProbeManifest = "ensure-probe/1";
    internal const string AffinityBucketManifest = "affinity-bucket/2";
    internal const string PeerLookupManifest = "affinity-lookup/2";
    internal const string PeerLookupAnswerManifest = "affinity-lookup-answer/2";
    internal const string ClusterConfigurationManifest = "cluster-configuration/1";
    internal const string RunningConfigurationManifest = "running-configuration/1";

    /// <summary>Sessions as an earlier version replicated them, by their keys in clear: never read, as this version stores only keyed hashes.</summary>
    internal const string RetiredAffinityBucketManifest = "affinity-bucket/1";

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        // Never inlined into HTML: a configuration's quotes take 2 bytes, not 6 (\u0022).
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Created by Akka from the binding in reference.conf.</summary>
    public BalancerSerializer(ExtendedActorSystem system) : base(system)
    {
    }

    /// <inheritdoc />
    public override int Identifier => Id;

    /// <inheritdoc />
    public override string Manifest(object o) => o switch
    {
        HealthRecord { Opaque: { } opaque } => opaque.Manifest,
        BackendOverride { Opaque: { } opaque } => opaque.Manifest,
        HealthRecord => HealthRecordManifest,
        BackendOverride => BackendOverrideManifest,
        ProbeEntity.EnsureProbe => EnsureProbeManifest,
        Affinity.AffinityBucket => AffinityBucketManifest,
        Affinity.AffinityStore.PeerLookup => PeerLookupManifest,
        Affinity.AffinityStore.PeerLookupAnswer => PeerLookupAnswerManifest,
        Configuration.ClusterConfiguration => ClusterConfigurationManifest,
        Configuration.RunningConfiguration => RunningConfigurationManifest,
        _ => throw new ArgumentException($"{nameof(BalancerSerializer)} cannot serialize {o.GetType()}"),
    };

    /// <inheritdoc />
    public override byte[] ToBinary(object obj) => obj switch
    {
        Affinity.AffinityBucket bucket => AffinityBucketFormat.Write(bucket),
        HealthRecord { Opaque: { } opaque } => opaque.Bytes,
        BackendOverride { Opaque: { } opaque } => opaque.Bytes,
        _ => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options),
    };

    /// <summary>Replicated values this node could not read and carries unchanged, since it started.</summary>
    public static long OpaqueValuesRead => Interlocked.Read(ref _opaqueValuesRead);

    private static long _opaqueValuesRead;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _opaqueManifestsLogged = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _retiredManifestsLogged = new();

    /// <summary>A newer version of a replicated value's kind, as an opaque value of that kind; null for anything else.</summary>
    private object? Opaque(byte[] bytes, string manifest)
    {
        object? opaque = manifest.StartsWith("health-record/", StringComparison.Ordinal)
            ? new HealthRecord("", "", "", true, "", default) { Opaque = new OpaqueValue(manifest, bytes) }
            : manifest.StartsWith("backend-override/", StringComparison.Ordinal)
                ? new BackendOverride("", "", null, null, null, false, default) { Opaque = new OpaqueValue(manifest, bytes) }
                : null;
        if (opaque is not null)
        {
            Interlocked.Increment(ref _opaqueValuesRead);
            if (_opaqueManifestsLogged.TryAdd(manifest, true))
            {
                Logging.GetLogger(system, nameof(BalancerSerializer)).Warning(
                    "replicated values in format {0} (from a newer Balancer node) are carried unchanged but not used by this node until it is upgraded", manifest);
            }
        }
        return opaque;
    }

    /// <summary>
    /// A session bucket of an earlier version (keys in clear, kept under the earlier key names
    /// <c>balancer-affinity-POOL-N</c>, which this version never reads) becomes an empty bucket, so the
    /// gossip that carries it still delivers everything else; a session lookup of that version is refused.
    /// Either way the node says so once.
    /// </summary>
    private object Retired(string manifest)
    {
        if (_retiredManifestsLogged.TryAdd(manifest, true))
        {
            Logging.GetLogger(system, nameof(BalancerSerializer)).Warning(
                "a member runs an earlier Balancer version, which replicates sessions as {0}: its sessions are not shared with this node (this version stores them as keyed hashes, {1}) until every member runs this version",
                manifest, AffinityBucketManifest);
        }
        return manifest == RetiredAffinityBucketManifest
            ? Affinity.AffinityBucket.Empty
            : throw new SerializationException($"{manifest} from a member of an earlier Balancer version: refused, as this version looks sessions up by keyed hash ({PeerLookupManifest})");
    }

    /// <inheritdoc />
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (manifest is RetiredAffinityBucketManifest or "affinity-lookup/1" or "affinity-lookup-answer/1")
        {
            return Retired(manifest);
        }
        if (manifest == AffinityBucketManifest)
        {
            // As large as the remoting frame lets through: a bucket holds thousands of sessions.
            return AffinityBucketFormat.Read(bytes);
        }
        if (bytes.Length > MaxPayloadBytes)
        {
            throw new SerializationException($"refusing a {manifest} payload of {bytes.Length} bytes (limit {MaxPayloadBytes})");
        }
        Type? type = manifest switch
        {
            HealthRecordManifest => typeof(HealthRecord),
            BackendOverrideManifest => typeof(BackendOverride),
            EnsureProbeManifest => typeof(ProbeEntity.EnsureProbe),
            PeerLookupManifest => typeof(Affinity.AffinityStore.PeerLookup),
            PeerLookupAnswerManifest => typeof(Affinity.AffinityStore.PeerLookupAnswer),
            ClusterConfigurationManifest => typeof(Configuration.ClusterConfiguration),
            RunningConfigurationManifest => typeof(Configuration.RunningConfiguration),
            _ => null,
        };
        if (type is null)
        {
            return Opaque(bytes, manifest)
                ?? throw new SerializationException($"unknown manifest \"{manifest}\" (sent by a newer Balancer node?); message dropped");
        }
        try
        {
            return JsonSerializer.Deserialize(bytes, type, Options)
                ?? throw new SerializationException($"empty {manifest} payload");
        }
        catch (JsonException e)
        {
            throw new SerializationException($"malformed {manifest} payload: {e.Message}", e);
        }
    }

    /// <summary>The types this serializer is bound to.</summary>
    internal static readonly Type[] BoundTypes = [typeof(HealthRecord), typeof(BackendOverride), typeof(ProbeEntity.EnsureProbe), typeof(Affinity.AffinityBucket), typeof(Affinity.AffinityStore.PeerLookup), typeof(Affinity.AffinityStore.PeerLookupAnswer),
        typeof(Configuration.ClusterConfiguration), typeof(Configuration.RunningConfiguration)];
}
