using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Balancer.Health;
using Balancer.Replication;

namespace Balancer.Serialization;

/// <summary>
/// Serializes every message Balancer sends between nodes and every value it replicates, as compact
/// JSON under a versioned manifest. A manifest this node does not know (a newer node's message) or a
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
    // Written once per replicated session, in every bucket's gossip: short on purpose.
    internal const string AffinityEntryManifest = "ae/2";

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
        Affinity.AffinityEntry => AffinityEntryManifest,
        _ => throw new ArgumentException($"{nameof(BalancerSerializer)} cannot serialize {o.GetType()}"),
    };

    /// <inheritdoc />
    public override byte[] ToBinary(object obj) => obj is Affinity.AffinityEntry entry
        ? AffinityEntryToBinary(entry)
        : JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    /// <summary>
    /// A session's entry as [backend name length][backend name, UTF-8][expiry, Unix ms, little-endian]:
    /// about 10 bytes against 60 as JSON, which matters at 100,000 sessions a pool.
    /// </summary>
    private static byte[] AffinityEntryToBinary(Affinity.AffinityEntry entry)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(entry.Backend);
        if (name.Length > byte.MaxValue)
        {
            throw new ArgumentException($"backend name of {name.Length} bytes is too long to replicate");
        }
        var bytes = new byte[1 + name.Length + 8];
        bytes[0] = (byte)name.Length;
        name.CopyTo(bytes, 1);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(1 + name.Length), entry.ExpiresAt.ToUnixTimeMilliseconds());
        return bytes;
    }

    private static Affinity.AffinityEntry AffinityEntryFromBinary(byte[] bytes)
    {
        if (bytes.Length < 9 || bytes.Length != 1 + bytes[0] + 8)
        {
            throw new SerializationException($"malformed {AffinityEntryManifest} payload: {bytes.Length} bytes");
        }
        var backend = System.Text.Encoding.UTF8.GetString(bytes, 1, bytes[0]);
        var expires = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(1 + bytes[0]));
        return new Affinity.AffinityEntry(backend, DateTimeOffset.FromUnixTimeMilliseconds(expires));
    }

    /// <inheritdoc />
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (bytes.Length > MaxPayloadBytes)
        {
            throw new SerializationException($"refusing a {manifest} payload of {bytes.Length} bytes (limit {MaxPayloadBytes})");
        }
        if (manifest == AffinityEntryManifest)
        {
            return AffinityEntryFromBinary(bytes);
        }
        var type = manifest switch
        {
            HealthRecordManifest => typeof(HealthRecord),
            BackendOverrideManifest => typeof(BackendOverride),
            EnsureProbeManifest => typeof(ProbeEntity.EnsureProbe),
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
    internal static readonly Type[] BoundTypes = [typeof(HealthRecord), typeof(BackendOverride), typeof(ProbeEntity.EnsureProbe), typeof(Affinity.AffinityEntry)];
}
