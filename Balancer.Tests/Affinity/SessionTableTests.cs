using Balancer.Affinity;

namespace Balancer.Tests.Affinity;

/// <summary>The data plane's flat session table: what is set is found, whatever the table grew through, forgot or renamed on the way.</summary>
public class SessionTableTests
{
    private static readonly long Soon = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeMilliseconds();

    private static AffinityEntry Pin(string backend, int seconds = 0, bool established = false, bool provisional = false) =>
        new(backend, DateTimeOffset.FromUnixTimeMilliseconds(Soon + seconds * 1000L), established, provisional);

    [Fact]
    public void SetFindRemove_ThroughGrowth_KeepEveryEntryExactly()
    {
        var table = new SessionTable();
        var expected = new Dictionary<ulong, AffinityEntry>();
        var random = new Random(7);
        for (var i = 0; i < 50_000; i++)
        {
            var hash = (ulong)random.NextInt64() * 2 + (ulong)(i & 1);
            var entry = Pin($"b{i % 37}", i % 100, established: i % 3 == 0, provisional: i % 5 == 0);
            Assert.True(table.Set(hash, entry));
            expected[hash] = entry;
            if (i % 4 == 0)
            {
                var gone = expected.Keys.First();
                Assert.True(table.Remove(gone));
                expected.Remove(gone);
            }
        }
        Assert.Equal(expected.Count, table.Count);
        foreach (var (hash, entry) in expected)
        {
            Assert.True(table.TryGetValue(hash, out var found));
            Assert.Equal(entry, found);
        }
        Assert.Equal(expected.OrderBy(e => e.Key), table.ToList().OrderBy(e => e.Key));
        // About 16 bytes a session over a load of 0.6-0.8, forgotten slots reclaimed by growth.
        Assert.InRange(table.Bytes / table.Count, 16, 32);
    }

    [Fact]
    public void Remove_WithAnExpectedEntry_LeavesANewerOne_AndAForgottenSlotDoesNotHideWhatFollows()
    {
        var table = new SessionTable();
        // Hash 0 and neighbours that share a home slot in a 16-slot table.
        ulong[] hashes = [0, 1, 2, 3];
        foreach (var hash in hashes)
        {
            table.Set(hash, Pin("a"));
        }
        Assert.False(table.Remove(1, Pin("b")));
        Assert.True(table.Remove(1, Pin("a")));
        Assert.False(table.TryGetValue(1, out _));
        Assert.True(table.TryGetValue(2, out _));
        Assert.True(table.TryGetValue(3, out _));
        Assert.True(table.TryGetValue(0, out var zero));
        Assert.Equal(Pin("a"), zero);
        Assert.True(table.Remove(0));
        Assert.False(table.TryGetValue(0, out _));
        Assert.True(table.Set(0, Pin("c")));
        Assert.True(table.TryGetValue(0, out zero));
        Assert.Equal("c", zero.Backend);
        Assert.Equal(3, table.Count);
    }

    [Fact]
    public void ManyBackendNamesOverTime_OnlyTheNamesStillHeldAreKept()
    {
        var table = new SessionTable();
        // 40,000 distinct backends one after the other, each holding the one session: names of
        // backends no session holds are dropped when the name table fills.
        for (var i = 0; i < 40_000; i++)
        {
            Assert.True(table.Set(1, Pin($"backend-{i}")));
        }
        Assert.True(table.TryGetValue(1, out var entry));
        Assert.Equal("backend-39999", entry.Backend);
    }

    [Fact]
    public async Task Readers_WhileAWriterGrowsTheTable_NeverSeeAnotherSessionsEntry()
    {
        var table = new SessionTable();
        const int Sessions = 200_000;
        // Each session's backend is named after its hash, so a torn or misplaced read shows.
        var writer = Task.Run(() =>
        {
            for (ulong hash = 1; hash <= Sessions; hash++)
            {
                table.Set(hash * 0x9E3779B97F4A7C15, Pin($"b{hash % 1000}", established: hash % 2 == 0));
            }
        });
        var wrong = 0;
        var readers = Enumerable.Range(0, 2).Select(r => Task.Run(() =>
        {
            var random = new Random(r);
            while (!writer.IsCompleted)
            {
                var hash = (ulong)random.Next(1, Sessions + 1);
                if (table.TryGetValue(hash * 0x9E3779B97F4A7C15, out var entry)
                    && (entry.Backend != $"b{hash % 1000}" || entry.Established != (hash % 2 == 0) || entry.ExpiresAtUnixMilliseconds != Soon))
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        })).ToArray();
        await Task.WhenAll(readers.Append(writer)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, wrong);
        Assert.Equal(Sessions, table.Count);
    }
}
