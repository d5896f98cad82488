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
        new Balancer.Affinity.AffinityEntry("b", DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_123)),
        Balancer.Affinity.AffinityEntry.Cleared(DateTimeOffset.FromUnixTimeMilliseconds(1_795_000_000_000)),
    };

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
        var error = Assert.Throws<SerializationException>(() => serializer.FromBinary([1, 2, 3], "health-record/2"));
        Assert.Equal("unknown manifest \"health-record/2\" (sent by a newer Balancer node?); message dropped", error.Message);
    }

    [Fact]
    public void MalformedOrOversizedPayload_Rejected()
    {
        var serializer = new BalancerSerializer((ExtendedActorSystem)_system);
        Assert.StartsWith("malformed health-record/1 payload", Assert.Throws<SerializationException>(() => serializer.FromBinary("{not json"u8.ToArray(), "health-record/1")).Message);
        Assert.StartsWith("malformed ae/2 payload", Assert.Throws<SerializationException>(() => serializer.FromBinary([5, (byte)'a', 0, 0], "ae/2")).Message);
        Assert.StartsWith("refusing a ensure-probe/1 payload of", Assert.Throws<SerializationException>(() => serializer.FromBinary(new byte[BalancerSerializer.MaxPayloadBytes + 1], "ensure-probe/1")).Message);
    }
}
