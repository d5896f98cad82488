using Balancer.Configuration;
using Balancer.Health;

namespace Balancer.Tests.Health;

public class HealthLogicTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly PassiveHealthSettings Passive = new(5, true, TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5), 0.5);

    [Fact]
    public void ProbeVerdict_FallThenRise()
    {
        var verdict = new ProbeVerdict(rise: 2, fall: 3);
        Assert.True(verdict.Up);
        Assert.False(verdict.Record(false));
        Assert.True(verdict.Changing);
        Assert.False(verdict.Record(false));
        Assert.True(verdict.Record(false));
        Assert.False(verdict.Up);
        Assert.False(verdict.Changing);
        Assert.False(verdict.Record(true));
        Assert.True(verdict.Changing);
        Assert.True(verdict.Record(true));
        Assert.True(verdict.Up);
    }

    [Fact]
    public void ProbeVerdict_ASuccessResetsTheFailureStreak()
    {
        var verdict = new ProbeVerdict(rise: 2, fall: 2);
        verdict.Record(false);
        verdict.Record(true);
        Assert.False(verdict.Record(false));
        Assert.True(verdict.Up);
    }

    [Fact]
    public void Tracker_EjectionDoublesUpToTheCap_AndResetsAfterGoodBehaviour()
    {
        var tracker = new BackendTracker();
        var now = T0;
        var lengths = new List<TimeSpan>();
        for (var i = 0; i < 6; i++)
        {
            var length = tracker.Eject(Passive, now);
            lengths.Add(length);
            Assert.Equal(BackendHealth.Down, tracker.Health);
            now += length;
            Assert.True(tracker.EndEjectionIfDue(now));
            Assert.Equal(BackendHealth.Up, tracker.Health);
        }
        Assert.Equal(new[] { 30, 60, 120, 240, 300, 300 }, lengths.Select(l => (int)l.TotalSeconds));

        now += Passive.MaxEjection;
        Assert.Equal(TimeSpan.FromSeconds(30), tracker.Eject(Passive, now));
    }

    [Fact]
    public void Tracker_EjectionNotDue_StaysDown()
    {
        var tracker = new BackendTracker();
        tracker.Eject(Passive, T0);
        Assert.False(tracker.EndEjectionIfDue(T0 + TimeSpan.FromSeconds(29)));
        Assert.Equal(BackendHealth.Down, tracker.Health);
    }

    [Fact]
    public void Tracker_ActiveAndPassiveCombine()
    {
        var tracker = new BackendTracker();
        tracker.Eject(Passive, T0);
        tracker.ApplyProbe(false, T0 + TimeSpan.FromSeconds(1));
        tracker.EndEjectionIfDue(T0 + TimeSpan.FromSeconds(30));
        Assert.Equal(BackendHealth.Down, tracker.Health);
        Assert.True(tracker.ApplyProbe(true, T0 + TimeSpan.FromSeconds(31)));
        Assert.Equal(BackendHealth.Up, tracker.Health);
    }

    [Fact]
    public void Tracker_SlowStart_RampsLinearlyFromReturn()
    {
        var tracker = new BackendTracker();
        var slowStart = TimeSpan.FromSeconds(10);
        Assert.Equal(1.0, tracker.SlowStartFactor(slowStart, T0));
        tracker.ApplyProbe(false, T0);
        tracker.ApplyProbe(true, T0 + TimeSpan.FromSeconds(5));
        Assert.Equal(0.01, tracker.SlowStartFactor(slowStart, T0 + TimeSpan.FromSeconds(5)), 3);
        Assert.Equal(0.25, tracker.SlowStartFactor(slowStart, T0 + TimeSpan.FromSeconds(7.5)), 3);
        Assert.Equal(0.5, tracker.SlowStartFactor(slowStart, T0 + TimeSpan.FromSeconds(10)), 3);
        Assert.Equal(1.0, tracker.SlowStartFactor(slowStart, T0 + TimeSpan.FromSeconds(15)));
        Assert.Equal(1.0, tracker.SlowStartFactor(TimeSpan.Zero, T0 + TimeSpan.FromSeconds(6)));
    }
}

public class HealthFoldingTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly PassiveHealthSettings Passive = new(5, true, TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5), 0.5);

    private static Balancer.Replication.HealthRecord Record(string node, bool up, int second) =>
        new("app", "a", node, up, up ? "200" : "503", T0.AddSeconds(second));

    [Fact]
    public void ClusterVerdict_Sharded_TheLatestProbeWins()
    {
        var verdict = HealthFolding.ClusterVerdict([Record("n1", up: false, 1), Record("n2", up: true, 2)], members: null);
        Assert.Equal((true, "200"), verdict);
        Assert.Null(HealthFolding.ClusterVerdict([], members: null));
    }

    [Fact]
    public void ClusterVerdict_Sharded_ALaterVerdictWins_EvenAgainstAClockAhead_AndAGoneMemberHasNoSay()
    {
        // n1's clock is 30 s ahead: its earlier verdict carries the later time, but the lower number.
        var early = Record("n1", up: false, 30) with { Sequence = 4 };
        var later = Record("n2", up: true, 1) with { Sequence = 5 };
        Assert.Equal((true, "200"), HealthFolding.ClusterVerdict([early, later], members: null));

        // The newest verdict came from a member that has since left: the present members' latest counts.
        var fromGone = Record("gone", up: false, 2) with { Sequence = 6 };
        Assert.Equal((true, "200"), HealthFolding.ClusterVerdict([early, later, fromGone], members: null, present: new HashSet<string> { "n1", "n2" }));
        Assert.Null(HealthFolding.ClusterVerdict([fromGone], members: null, present: new HashSet<string> { "n1", "n2" }));
    }

    [Fact]
    public void ClusterVerdict_EveryNode_MajorityOfCurrentMembers_ATieIsUp()
    {
        var records = new[] { Record("n1", up: false, 1), Record("n2", up: false, 2), Record("n3", up: true, 3), Record("gone", up: true, 4) };
        Assert.False(HealthFolding.ClusterVerdict(records, new HashSet<string> { "n1", "n2", "n3" })!.Value.Up);
        Assert.True(HealthFolding.ClusterVerdict(records, new HashSet<string> { "n1", "n3" })!.Value.Up);
        Assert.StartsWith("2 of 3 probing nodes say down", HealthFolding.ClusterVerdict(records, new HashSet<string> { "n1", "n2", "n3" })!.Value.Reason);
        Assert.Null(HealthFolding.ClusterVerdict(records, new HashSet<string> { "n9" }));
    }

    [Theory]
    [InlineData(10, 0.5, 5)]
    [InlineData(3, 0.1, 1)]
    [InlineData(3, 0.0, 0)]
    public void EjectionBudget_AShareOfThePool_AtLeastOne(int backends, double percent, int budget) =>
        Assert.Equal(budget, HealthFolding.EjectionBudget(backends, Passive with { MaxEjectedPercent = percent }));

    [Fact]
    public void ShouldEject_AtTheStreak_WithinTheBudget_NeverWhenOff()
    {
        Assert.False(HealthFolding.ShouldEject(4, 0, 1, Passive));
        Assert.True(HealthFolding.ShouldEject(5, 0, 1, Passive));
        Assert.False(HealthFolding.ShouldEject(5, 1, 1, Passive));
        Assert.False(HealthFolding.ShouldEject(500, 0, 1, Passive with { ConsecutiveFailures = 0 }));
    }
}
