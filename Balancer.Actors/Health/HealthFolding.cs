using Balancer.Configuration;
using Balancer.Replication;

namespace Balancer.Health;

/// <summary>
/// How a pool's routing actor turns what it knows into a backend's health: the cluster's verdict
/// from the replicated probe records, and when passive health may eject. Pure functions, so that
/// they are tested without an actor.
/// </summary>
public static class HealthFolding
{
    /// <summary>
    /// The cluster's verdict on one backend from its probe records: the latest one (sharded
    /// placement: one prober at a time; latest by <see cref="HealthRecord.Sequence"/>, never by a
    /// clock, and only among records of <paramref name="present"/> members when given, so a gone
    /// member's last word does not outlast it), or, when <paramref name="members"/> is given
    /// (every-node placement), the majority of those current members' verdicts, a tie counting as
    /// up. Null when no record counts.
    /// </summary>
    public static (bool Up, string Reason)? ClusterVerdict(IReadOnlyCollection<HealthRecord> records, IReadOnlySet<string>? members, IReadOnlySet<string>? present = null)
    {
        if (records.Count == 0)
        {
            return null;
        }
        if (members is null)
        {
            var latest = records.Where(r => present is null || present.Contains(r.Node))
                .MaxBy(r => (r.Sequence, r.CheckedAt, r.Node));
            return latest is null ? null : (latest.Up, latest.Reason);
        }
        var voters = records.Where(r => members.Contains(r.Node)).ToList();
        if (voters.Count == 0)
        {
            return null;
        }
        var down = voters.Count(r => !r.Up);
        var up = down * 2 <= voters.Count;
        return (up, $"{down} of {voters.Count} probing nodes say down; " + (voters.FirstOrDefault(r => r.Up == up)?.Reason ?? ""));
    }

    /// <summary>How many of a pool's <paramref name="backends"/> passive health may hold ejected at once: <c>max-ejected-percent</c> of them, at least one (none at 0%).</summary>
    public static int EjectionBudget(int backends, PassiveHealthSettings passive) =>
        passive.MaxEjectedPercent <= 0 ? 0 : Math.Max(1, (int)Math.Floor(backends * passive.MaxEjectedPercent));

    /// <summary>True when a backend with this failure streak is to be ejected now, <paramref name="ejected"/> backends of the pool being ejected already.</summary>
    public static bool ShouldEject(long consecutiveFailures, int ejected, int budget, PassiveHealthSettings passive) =>
        passive.ConsecutiveFailures > 0 && consecutiveFailures >= passive.ConsecutiveFailures && ejected < budget;
}
