using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Balancer.Health;
using Balancer.Replication;

namespace Balancer.Serialization;

/// <summary>
/// Serializes every message Balancer sends between nodes and every value it replicates under a
/// versioned manifest: compact JSON, and affinity buckets in their own binary format
/// (<see cref="AffinityBucketFormat"/>). A manifest this node does not know (a newer node's message) or a
/// payload over <see cref="MaxPayloadBytes"/> is refused with a <see cref="SerializationException"/>,
/// which Akka logs and drops: it never takes the node down.
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
    internal const string AffinityBucketManifest = "affinity-bucket/1";
    internal const string PeerLookupManifest = "affinity-lookup/1";
    internal const string PeerLookupAnswerManifest = "affinity-lookup-answer/1";

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
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
        HealthRecord => HealthRecordManifest,
        BackendOverride => BackendOverrideManifest,
        ProbeEntity.EnsureProbe => EnsureProbeManifest,
        Affinity.AffinityBucket => AffinityBucketManifest,
        Affinity.AffinityStore.PeerLookup => PeerLookupManifest,
        Affinity.AffinityStore.PeerLookupAnswer => PeerLookupAnswerManifest,
        _ => throw new ArgumentException($"{nameof(BalancerSerializer)} cannot serialize {o.GetType()}"),
    };

    /// <inheritdoc />
    public override byte[] ToBinary(object obj) => obj is Affinity.AffinityBucket bucket
        ? AffinityBucketFormat.Write(bucket)
        : JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    /// <inheritdoc />
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (manifest == AffinityBucketManifest)
        {
            // As large as the remoting frame lets through: a bucket holds thousands of sessions.
            return AffinityBucketFormat.Read(bytes);
        }
        if (bytes.Length > MaxPayloadBytes)
        {
            throw new SerializationException($"refusing a {manifest} payload of {bytes.Length} bytes (limit {MaxPayloadBytes})");
        }
        var type = manifest switch
        {
            HealthRecordManifest => typeof(HealthRecord),
            BackendOverrideManifest => typeof(BackendOverride),
            EnsureProbeManifest => typeof(ProbeEntity.EnsureProbe),
            PeerLookupManifest => typeof(Affinity.AffinityStore.PeerLookup),
            PeerLookupAnswerManifest => typeof(Affinity.AffinityStore.PeerLookupAnswer),
            _ => throw new SerializationException($"unknown manifest \"{manifest}\" (sent by a newer Balancer node?); message dropped"),
        };
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
    internal static readonly Type[] BoundTypes = [typeof(HealthRecord), typeof(BackendOverride), typeof(ProbeEntity.EnsureProbe), typeof(Affinity.AffinityBucket), typeof(Affinity.AffinityStore.PeerLookup), typeof(Affinity.AffinityStore.PeerLookupAnswer)];
}
