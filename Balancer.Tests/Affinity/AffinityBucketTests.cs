using Akka.DistributedData;
using Balancer.Affinity;

namespace Balancer.Tests.Affinity;

/// <summary>The replicated affinity bucket is a CRDT: merges converge whatever their order, and expired sessions stay gone.</summary>
public class AffinityBucketTests
{
    private static readonly DateTimeOffset Soon = DateTimeOffset.UtcNow.AddMinutes(10);

    private static AffinityEntry Pin(string backend, int secondsAfterSoon = 0) => new(backend, Soon.AddSeconds(secondsAfterSoon));

    [Fact]
    public void Merge_IsCommutativeAssociativeAndIdempotent()
    {
        var x = AffinityBucket.Empty.Set("s1", Pin("a")).Set("s2", Pin("b", 5)).ResetDelta();
        var y = AffinityBucket.Empty.Set("s1", Pin("c", 1)).Set("s3", Pin("a")).ResetDelta();
        var z = AffinityBucket.Empty.Set("s2", Pin("c", 2)).Set("s3", Pin("b")).Set("s4", Pin("a")).ResetDelta();

        var expected = new Dictionary<string, AffinityEntry>
        {
            ["s1"] = Pin("c", 1), // the later expiry wins
            ["s2"] = Pin("b", 5),
            ["s3"] = Pin("b"),    // same expiry: the ordinally greater backend wins, on every node
            ["s4"] = Pin("a"),
        };
        foreach (var merged in new[] { x.Merge(y).Merge(z), z.Merge(x.Merge(y)), y.Merge(z).Merge(x), x.Merge(z).Merge(y).Merge(y).Merge(x) })
        {
            Assert.Equal(expected, merged.Entries);
        }
        Assert.Equal(x.Merge(y).Merge(z), z.Merge(y).Merge(x));
    }

    [Fact]
    public void Set_KeepsTheWinner_AndCollectsADeltaOfWhatChanged()
    {
        var bucket = AffinityBucket.Empty.Set("s1", Pin("a", 10)).ResetDelta();
        Assert.Equal(0, bucket.Delta.Count);

        var older = bucket.Set("s1", Pin("b"));
        Assert.Same(bucket, older);

        var updated = bucket.Set("s1", Pin("b", 20)).Set("s2", Pin("a"));
        Assert.Equal(["s1", "s2"], updated.Delta.Entries.Keys);
        Assert.Equal(Pin("b", 20), updated.Delta.Entries["s1"]);

        // A peer holding the old state converges by merging only the delta.
        var peer = AffinityBucket.Empty.Set("s1", Pin("a", 10)).ResetDelta();
        Assert.Equal(updated.ResetDelta(), peer.MergeDelta(updated.Delta));
        // A node that had nothing builds the bucket from the delta alone.
        var fresh = (AffinityBucket)((IReplicatedDelta)updated.Delta).Zero.MergeDelta(updated.Delta);
        Assert.Equal(updated.ResetDelta(), fresh);
    }

    [Fact]
    public void Merge_OfWhatAnUpdateMadeFromTheStoredValue_IsThatResult()
    {
        var stored = AffinityBucket.Of([new("s1", Pin("a"))]);
        var updated = stored.Set("s2", Pin("b")).Set("s3", Pin("c")).ResetDelta();
        // The replicator merges an update's result into the value it started from.
        Assert.Same(updated, stored.Merge(updated));
        Assert.Equal(3, updated.Count);
    }

    [Fact]
    public void ExpiredSessions_AreSwept_AndNotBroughtBackByAStaleCopy()
    {
        var now = DateTimeOffset.UtcNow;
        // As the replicator holds it: read from the wire or merged.
        var stale = AffinityBucket.Of([new("gone", new AffinityEntry("a", now.AddSeconds(-1))), new("live", new AffinityEntry("b", now.AddMinutes(5)))]);

        var swept = stale.WithoutExpired(now);
        Assert.Equal(["live"], swept.Entries.Keys);
        // The replicator merges the swept result into the value it came from: the sweep holds.
        Assert.Equal(["live"], stale.Merge(swept).Entries.Keys);
        // A peer's copy that still holds the expired session does not bring it back.
        Assert.Equal(["live"], swept.ResetDelta().Merge(AffinityBucket.Of(stale.Entries)).Entries.Keys);
        Assert.Equal(["live"], AffinityBucket.Empty.Merge(AffinityBucket.Of(stale.Entries).WithoutExpired(now)).Entries.Keys);
    }

    [Fact]
    public void Entries_AreKeptToTheMillisecond_AsReplicated()
    {
        var precise = new DateTimeOffset(2026, 11, 24, 10, 0, 0, TimeSpan.Zero).AddTicks(12_345);
        var entry = new AffinityEntry("a", precise);
        Assert.Equal(precise.ToUnixTimeMilliseconds(), entry.ExpiresAt.ToUnixTimeMilliseconds());
        Assert.Equal(0, entry.ExpiresAt.UtcTicks % TimeSpan.TicksPerMillisecond);
    }
}
