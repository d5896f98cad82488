using System.Runtime.Serialization;
using Akka.Actor;
using Balancer.Health;
using Balancer.Model;
using Balancer.Replication;
using Balancer.Serialization;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Serialization;

public class BalancerSerializerTests : IAsyncLifetime
{
    private ActorSystem _system = null!;

    public Task InitializeAsync()
    {
        _system = ActorSystem.Create("serialization", BalancerSettings.DefaultConfig().WithFallback(BalancerHost.ClusterOfOne));
        return Task.CompletedTask;
    }

    public Task DisposeAsync() => _system.Terminate();

    public static TheoryData<object> Values => new()
    {
        new HealthRecord("app", "b", "akka.tcp://balancer@127.0.0.1:4053", false, "HTTP 503 (expected 200-399)", new DateTimeOffset(2026, 11, 24, 1, 2, 3, TimeSpan.Zero)),
        new BackendOverride("app", "d", "10.0.0.4:8080", 50, BackendAdminState.Drain, false, new DateTimeOffset(2026, 11, 24, 1, 2, 3, TimeSpan.Zero)),
        new BackendOverride("app", "a", null, null, null, true, DateTimeOffset.UnixEpoch),
        new ProbeEntity.EnsureProbe("app", "b", "127.0.0.1:9002"),
        Balancer.Affinity.AffinityBucket.Empty,
        new Balancer.Affinity.AffinityStore.PeerLookup(7, 0xfedcba9876543210),
        new Balancer.Affinity.AffinityStore.PeerLookupAnswer(7, "b", 1_795_000_000_123, Established: true),
        new Balancer.Affinity.AffinityStore.PeerLookupAnswer(8, null, 0),
        Balancer.Affinity.AffinityBucket.Empty
            .Set(ulong.MaxValue, new Balancer.Affinity.AffinityEntry("b", DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_123), Established: true))
            .Set(2, new Balancer.Affinity.AffinityEntry("séance", DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_456)))
            .Set(3, new Balancer.Affinity.AffinityEntry("c", DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_789), Established: true, Provisional: true))
            .Set(0, Balancer.Affinity.AffinityEntry.Cleared(DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_000)))
            .WithCapacity(1500),
        new Balancer.Configuration.RunningConfiguration(3, "5d41402abc4b", new DateTimeOffset(2026, 11, 24, 1, 2, 3, TimeSpan.Zero)),
    };

    [Fact]
    public void ClusterConfiguration_RoundTrips_WithItsHistory()
    {
        var at = new DateTimeOffset(2026, 12, 7, 10, 2, 11, TimeSpan.Zero);
        var value = new Balancer.Configuration.ClusterConfiguration(2, "balancer.pools.app.algorithm = maglev\n", "akka.tcp://balancer@127.0.0.1:4053", at, "5d41402abc4b",
            ["pool app changed: algorithm"],
            [new Balancer.Configuration.ClusterConfigurationVersion(1, "akka.tcp://balancer@127.0.0.1:4054", at.AddMinutes(-5), "7e0c2a4f11d9", ["pool api added (2 backends, round-robin)"])]);
        var serializer = _system.Serialization.FindSerializerFor(value);
        Assert.IsType<BalancerSerializer>(serializer);
        var back = (Balancer.Configuration.ClusterConfiguration)_system.Serialization.Deserialize(serializer.ToBinary(value), serializer.Identifier, Akka.Serialization.Serialization.ManifestFor(serializer, value));
        Assert.True(Balancer.Configuration.SettingsComparer.Same(value, back));
        Assert.Equal("pool api added (2 backends, round-robin)", Assert.Single(Assert.Single(back.History).Changes));
        Assert.Equal([2L, 1L], back.Versions.Select(v => v.Version));
    }

    [Theory]
    [MemberData(nameof(Values))]
    public void RoundTrip_ThroughTheBoundSerializer(object value)
    {
        var serializer = _system.Serialization.FindSerializerFor(value);
        Assert.IsType<BalancerSerializer>(serializer);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, value);
        var bytes = serializer.ToBinary(value);
        Assert.Equal(value, _system.Serialization.Deserialize(bytes, serializer.Identifier, manifest));
    }

    [Fact]
    public void UnknownManifest_RejectedWithAReason()
    {
        var serializer = new BalancerSerializer((ExtendedActorSystem)_system);
        var error = Assert.Throws<SerializationException>(() => serializer.FromBinary([1, 2, 3], "ensure-probe/2"));
        Assert.Equal("unknown manifest \"ensure-probe/2\" (sent by a newer Balancer node?); message dropped", error.Message);
    }

    [Fact]
    public void ADictionaryWithANewerNodesValue_StillReplicates_TheNewerValueCarriedUnchanged_AndSkipped()
    {
        // Distributed Data's serializers, as the replicator binds them.
        _system.Settings.InjectTopLevelFallback(Akka.DistributedData.DistributedData.DefaultConfig());
        // A newer node wrote one health verdict in a format this node does not know.
        var serializer = (BalancerSerializer)_system.Serialization.FindSerializerForType(typeof(HealthRecord));
        var newer = "{\"pool\":\"app\",\"backend\":\"a\",\"verdict\":{\"up\":false}}"u8.ToArray();
        var carried = (HealthRecord)serializer.FromBinary(newer, "health-record/2");
        Assert.NotNull(carried.Opaque);

        var node = new Akka.Cluster.UniqueAddress(Address.Parse("akka.tcp://serialization@127.0.0.1:4053"), 1);
        var known = new HealthRecord("app", "b", "akka.tcp://balancer@127.0.0.1:4053", false, "HTTP 503", new DateTimeOffset(2026, 11, 24, 1, 2, 3, TimeSpan.Zero));
        var map = Akka.DistributedData.LWWDictionary<string, HealthRecord>.Empty
            .SetItem(node, "app/a/newer-node", carried)
            .SetItem(node, "app/b/this-node", known);

        // Akka's own serializer of the dictionary, as gossip would carry it.
        var mapSerializer = _system.Serialization.FindSerializerFor(map);
        var bytes = mapSerializer.ToBinary(map);
        var read = (Akka.DistributedData.LWWDictionary<string, HealthRecord>)_system.Serialization.Deserialize(bytes, mapSerializer.Identifier, Akka.Serialization.Serialization.ManifestFor(mapSerializer, map));

        Assert.Equal(known, read["app/b/this-node"]);
        // The newer value travels on exactly as it came, so newer nodes never see it degraded.
        var passedOn = read["app/a/newer-node"];
        Assert.Equal("health-record/2", Akka.Serialization.Serialization.ManifestFor(serializer, passedOn));
        Assert.Equal(newer, serializer.ToBinary(passedOn));
        // And what this node uses leaves it out.
        Assert.Null(Balancer.Health.HealthFolding.ClusterVerdict(read.Entries.Values.Where(r => r.Opaque is null && r.Backend == "a").ToList(), null));
        Assert.True(BalancerSerializer.OpaqueValuesRead >= 2);
    }

    [Fact]
    public void MalformedOrOversizedPayload_Rejected()
    {
        var serializer = new BalancerSerializer((ExtendedActorSystem)_system);
        Assert.StartsWith("malformed health-record/1 payload", Assert.Throws<SerializationException>(() => serializer.FromBinary("{not json"u8.ToArray(), "health-record/1")).Message);
        // A count larger than the payload could hold is refused before anything is allocated for it.
        Assert.Equal("malformed affinity-bucket/2 payload: count 2147483647 exceeds what 0 remaining bytes can hold",
            Assert.Throws<SerializationException>(() => serializer.FromBinary([0, 0xff, 0xff, 0xff, 0xff, 0x07], "affinity-bucket/2")).Message);
        byte[] Entry(byte hash, byte backend, byte flags = 0) => [hash, 0, 0, 0, 0, 0, 0, 0, backend, 1, 0, 0, 0, 0, 0, 0, 0, flags];
        Assert.Equal("malformed affinity-bucket/2 payload: entry 0 names backend 3 of 1",
            Assert.Throws<SerializationException>(() => serializer.FromBinary([10, 1, 1, (byte)'a', 1, .. Entry(1, 3)], "affinity-bucket/2")).Message);
        Assert.Equal("malformed affinity-bucket/2 payload: truncated at byte 5",
            Assert.Throws<SerializationException>(() => serializer.FromBinary([10, 1, 1, (byte)'a', 1, 1, 2, 3], "affinity-bucket/2")).Message);
        Assert.Equal("malformed affinity-bucket/2 payload: entry 1 is out of hash order",
            Assert.Throws<SerializationException>(() => serializer.FromBinary([10, 1, 1, (byte)'a', 2, .. Entry(1, 0), .. Entry(1, 0)], "affinity-bucket/2")).Message);
        Assert.Equal("malformed affinity-bucket/2 payload: entry 0 has unknown flags 4",
            Assert.Throws<SerializationException>(() => serializer.FromBinary([10, 1, 1, (byte)'a', 1, .. Entry(1, 0, flags: 4)], "affinity-bucket/2")).Message);
        Assert.StartsWith("refusing a ensure-probe/1 payload of", Assert.Throws<SerializationException>(() => serializer.FromBinary(new byte[BalancerSerializer.MaxPayloadBytes + 1], "ensure-probe/1")).Message);
    }

    [Fact]
    public void SessionsOfAnEarlierVersion_KeysInClear_AreNeverRead_AndItsLookupsAreRefusedByName()
    {
        var serializer = new BalancerSerializer((ExtendedActorSystem)_system);
        // affinity-bucket/1 as an earlier version wrote it: one session under its key in clear.
        var earlier = (Balancer.Affinity.AffinityBucket)serializer.FromBinary([1, 1, (byte)'a', 1, 1, (byte)'k', 0, 0, 0, 0, 0, 0, 0, 0, 0], "affinity-bucket/1");
        Assert.Equal(0, earlier.Count);
        Assert.Contains("earlier Balancer version", Assert.Throws<SerializationException>(() => serializer.FromBinary("{}"u8.ToArray(), "affinity-lookup/1")).Message);
    }
}
