using Akka.DistributedData;
using Balancer.Affinity;

namespace Balancer.Tests.Affinity;

/// <summary>The replicated session bucket is a CRDT: merges converge whatever their order, expired sessions stay gone, and a full bucket evicts the same sessions on every node.</summary>
public class AffinityBucketTests
{
    private static readonly DateTimeOffset Soon = DateTimeOffset.UtcNow.AddMinutes(10);

    private static AffinityEntry Pin(string backend, int secondsAfterSoon = 0, bool established = false) => new(backend, Soon.AddSeconds(secondsAfterSoon), established);

    [Fact]
    public void Merge_IsCommutativeAssociativeAndIdempotent()
    {
        var x = AffinityBucket.Empty.Set(1, Pin("a")).Set(2, Pin("b", 5)).ResetDelta();
        var y = AffinityBucket.Empty.Set(1, Pin("c", 1)).Set(3, Pin("a")).Set(5, Pin("a", 9)).ResetDelta();
        var z = AffinityBucket.Empty.Set(2, Pin("c", 2)).Set(3, Pin("b")).Set(4, Pin("a")).Set(5, Pin("b", 1, established: true)).ResetDelta();

        var expected = new Dictionary<ulong, AffinityEntry>
        {
            [1] = Pin("c", 1), // the later expiry wins
            [2] = Pin("b", 5),
            [3] = Pin("b"),    // same expiry: the ordinally greater backend wins, on every node
            [4] = Pin("a"),
            [5] = Pin("b", 1, established: true), // established wins over a later pin seen once
        };
        foreach (var merged in new[] { x.Merge(y).Merge(z), z.Merge(x.Merge(y)), y.Merge(z).Merge(x), x.Merge(z).Merge(y).Merge(y).Merge(x) })
        {
            Assert.Equal(expected, merged.Entries);
        }
        Assert.Equal(x.Merge(y).Merge(z), z.Merge(y).Merge(x));
    }

    [Fact]
    public void AProvisionalPin_LosesToAnyPinOfAMember_EvenAnOlderOneSeenOnce()
    {
        // Node 3 pinned session 1 to c while it served outside the cluster, later and established;
        // the cluster had acknowledged it on a, seen once: a wins on every node, whatever the order.
        var alone = AffinityBucket.Empty.Set(1, new AffinityEntry("c", Soon.AddSeconds(30), Established: true, Provisional: true)).ResetDelta();
        var cluster = AffinityBucket.Empty.Set(1, Pin("a")).ResetDelta();
        Assert.Equal(Pin("a"), alone.Merge(cluster).Entries[1]);
        Assert.Equal(Pin("a"), cluster.Merge(alone).Entries[1]);
        // Between two provisional pins the usual order holds.
        var other = AffinityBucket.Empty.Set(1, new AffinityEntry("b", Soon.AddSeconds(40), Established: true, Provisional: true)).ResetDelta();
        Assert.Equal("b", alone.Merge(other).Entries[1].Backend);
        Assert.Equal("b", other.Merge(alone).Entries[1].Backend);
    }

    [Fact]
    public void Set_KeepsTheWinner_AndCollectsADeltaOfWhatChanged()
    {
        var bucket = AffinityBucket.Empty.Set(1, Pin("a", 10)).ResetDelta();
        Assert.Equal(0, bucket.Delta.Count);

        var older = bucket.Set(1, Pin("b"));
        Assert.Same(bucket, older);

        var updated = bucket.Set(1, Pin("b", 20)).Set(2, Pin("a"));
        Assert.Equal([1UL, 2UL], updated.Delta.Entries.Keys);
        Assert.Equal(Pin("b", 20), updated.Delta.Entries[1]);

        // A peer holding the old state converges by merging only the delta.
        var peer = AffinityBucket.Empty.Set(1, Pin("a", 10)).ResetDelta();
        Assert.Equal(updated.ResetDelta(), peer.MergeDelta(updated.Delta));
        // A node that had nothing builds the bucket from the delta alone.
        var fresh = (AffinityBucket)((IReplicatedDelta)updated.Delta).Zero.MergeDelta(updated.Delta);
        Assert.Equal(updated.ResetDelta(), fresh);
    }

    [Fact]
    public void SetAll_IsSetOneAfterTheOther_InOnePass()
    {
        var random = new Random(3);
        var bucket = AffinityBucket.Empty;
        for (var i = 0; i < 200; i++)
        {
            bucket = bucket.Set((ulong)random.Next(1000), Pin($"b{i % 4}", random.Next(60), established: i % 7 == 0));
        }
        bucket = bucket.ResetDelta();
        var pins = Enumerable.Range(0, 300)
            .Select(i => new KeyValuePair<ulong, AffinityEntry>((ulong)random.Next(1000), Pin($"b{i % 5}", random.Next(60), established: i % 3 == 0)))
            .ToList();
        var oneByOne = pins.Aggregate(bucket, (b, pin) => b.Set(pin.Key, pin.Value));
        var batched = bucket.SetAll(pins);
        Assert.Equal(oneByOne, batched);
        Assert.Equal(oneByOne.Delta, batched.Delta);
        Assert.True(batched.Entries.Keys.SequenceEqual(batched.Entries.Keys.Order()));
    }

    [Fact]
    public void Of_UnsortedWithTwoEntriesForOneSession_KeepsTheWinnerInHashOrder()
    {
        var bucket = AffinityBucket.Of([new(3, Pin("a")), new(1, Pin("b")), new(3, Pin("c", 5)), new(2, Pin("d"))], capacity: 10);
        Assert.Equal([1UL, 2UL, 3UL], bucket.Entries.Keys);
        Assert.Equal(Pin("c", 5), bucket.Entries[3]);
    }

    [Fact]
    public void Merge_OfWhatAnUpdateMadeFromTheStoredValue_IsThatResult()
    {
        var stored = AffinityBucket.Of([new(1, Pin("a"))], capacity: 10);
        var updated = stored.Set(2, Pin("b")).Set(3, Pin("c")).WithCapacity(10).ResetDelta();
        // The replicator merges an update's result into the value it started from.
        Assert.Same(updated, stored.Merge(updated));
        Assert.Equal(3, updated.Count);
    }

    [Fact]
    public void ExpiredSessions_AreSwept_AndNotBroughtBackByAStaleCopy()
    {
        var now = DateTimeOffset.UtcNow;
        // As the replicator holds it: read from the wire or merged.
        var stale = AffinityBucket.Of([new(1, new AffinityEntry("a", now.AddSeconds(-1))), new(2, new AffinityEntry("b", now.AddMinutes(5)))], capacity: 10);

        var swept = stale.WithoutExpired(now);
        Assert.Equal([2UL], swept.Entries.Keys);
        // The replicator merges the swept result into the value it came from: the sweep holds.
        Assert.Equal([2UL], stale.Merge(swept).Entries.Keys);
        // A peer's copy that still holds the expired session does not bring it back.
        Assert.Equal([2UL], swept.ResetDelta().Merge(AffinityBucket.Of(stale.Entries, 10)).Entries.Keys);
        Assert.Equal([2UL], AffinityBucket.Empty.Merge(AffinityBucket.Of(stale.Entries, 10).WithoutExpired(now)).Entries.Keys);
    }

    [Fact]
    public void AFullBucket_EvictsSessionsSeenOnceFirst_ClosestToExpiry_AndKeepsAQuarterForNewSessions()
    {
        var bucket = AffinityBucket.Empty.WithCapacity(8);
        // Six established sessions, then a flood of twenty sessions seen once, each later than the last.
        for (ulong hash = 1; hash <= 6; hash++)
        {
            bucket = bucket.Set(hash, Pin("a", (int)hash, established: true));
        }
        for (ulong hash = 100; hash < 120; hash++)
        {
            bucket = bucket.Set(hash, Pin("b", 100 + (int)hash)).WithinCapacity();
        }
        // Every established session stays; the two newest of the flood fill the rest.
        Assert.Equal([1UL, 2, 3, 4, 5, 6, 118, 119], bucket.Entries.Keys);

        // More established sessions than fit: the quarter (2) stays open to sessions seen once,
        // and the established closest to expiry go.
        for (ulong hash = 7; hash <= 9; hash++)
        {
            bucket = bucket.Set(hash, Pin("a", (int)hash, established: true)).WithinCapacity();
        }
        Assert.Equal([4UL, 5, 6, 7, 8, 9, 118, 119], bucket.Entries.Keys);
    }

    [Fact]
    public void Eviction_IsTheSameOnEveryNode_WhateverOrderTheSessionsArriveIn()
    {
        var random = new Random(20261202);
        var replicas = new AffinityBucket[3];
        for (var round = 0; round < 20; round++)
        {
            for (var i = 0; i < replicas.Length; i++)
            {
                var bucket = (replicas[i] ?? AffinityBucket.Empty).WithCapacity(40);
                for (var n = 0; n < 15; n++)
                {
                    bucket = bucket.Set((ulong)random.Next(1, 200), Pin("abc"[random.Next(3)].ToString(), random.Next(0, 300), established: random.Next(3) == 0));
                }
                replicas[i] = bucket.WithinCapacity().ResetDelta();
            }
            // Gossip between two random replicas, either way round.
            var (from, to) = (random.Next(3), random.Next(3));
            replicas[to] = replicas[to].Merge(replicas[from]);
            Assert.True(replicas[to].Count <= 40);
        }
        var all = replicas[0].Merge(replicas[1]).Merge(replicas[2]);
        Assert.Equal(all, replicas[2].Merge(replicas[0]).Merge(replicas[1]));
        Assert.Equal(all, replicas[1].Merge(replicas[2].Merge(replicas[0])));
        Assert.Equal(all, all.Merge(replicas[1]));
        Assert.Equal(40, all.Count);
    }

    [Fact]
    public void Entries_AreKeptToTheMillisecond_AsReplicated()
    {
        var precise = new DateTimeOffset(2026, 11, 24, 10, 0, 0, TimeSpan.Zero).AddTicks(12_345);
        var entry = new AffinityEntry("a", precise);
        Assert.Equal(precise.ToUnixTimeMilliseconds(), entry.ExpiresAt.ToUnixTimeMilliseconds());
        Assert.Equal(0, entry.ExpiresAt.UtcTicks % TimeSpan.TicksPerMillisecond);
    }

    [Fact]
    public void SessionHash_IsSipHash24_AndKeyedByTheClustersAffinityKey()
    {
        // The reference implementation's vectors: key 00..0f, messages 00..(n-1).
        var key = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
        var sip = new SessionHash(key);
        Assert.Equal(0x726fdb47dd0e0e31UL, sip.Of([]));
        Assert.Equal(0x74f839c593dc67fdUL, sip.Of([0]));
        Assert.Equal(0x93f5f5799a932462UL, sip.Of(Enumerable.Range(0, 8).Select(i => (byte)i).ToArray()));
        Assert.Equal(0xa129ca6149be45e5UL, sip.Of(Enumerable.Range(0, 15).Select(i => (byte)i).ToArray()));

        var one = new AffinityKey("one-cluster-key-of-16+");
        var other = new AffinityKey("another-cluster-key-16+");
        Assert.Equal(one.SessionHash!.Of("user-42"), new AffinityKey("one-cluster-key-of-16+").SessionHash!.Of("user-42"));
        Assert.NotEqual(one.SessionHash.Of("user-42"), other.SessionHash!.Of("user-42"));
        Assert.Null(new AffinityKey("").SessionHash);
    }
}
