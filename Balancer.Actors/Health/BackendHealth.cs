using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Health;

/// <summary>Whether a backend may take traffic as far as health is concerned.</summary>
public enum BackendHealth
{
    /// <summary>Active checks pass (or are off) and passive health has not ejected it.</summary>
    Up,
    /// <summary>An active check or passive ejection took it out.</summary>
    Down,
}

/// <summary>
/// What one pool's routing actor tracks for a backend: the active view (probes), the passive view
/// (ejections from real traffic), the operator's state, and when it last came back (slow start).
/// Pure logic with explicit time, so it is tested without an actor or a clock.
/// </summary>
public sealed class BackendTracker
{
    /// <summary>The operator's state.</summary>
    public BackendAdminState AdminState { get; set; } = BackendAdminState.Ready;

    /// <summary>Weight set at runtime, or null for the configured one.</summary>
    public int? Weight { get; set; }

    /// <summary>Why its health last changed ("" before any change), as the log line says it.</summary>
    public string HealthReason { get; set; } = "";

    /// <summary>The last verdict of active health checks; up until a probe says otherwise.</summary>
    public bool ActiveUp { get; private set; } = true;

    /// <summary>End of the current passive ejection, if any.</summary>
    public DateTimeOffset? EjectedUntil { get; private set; }

    /// <summary>Ejections in a row; each doubles the next ejection's length.</summary>
    public int Ejections { get; private set; }

    /// <summary>When the backend last came back up, for slow start.</summary>
    public DateTimeOffset? CameBackAt { get; private set; }

    private DateTimeOffset? _lastEjectionEnded;

    /// <summary>Up when neither the active nor the passive view says down.</summary>
    public BackendHealth Health => ActiveUp && EjectedUntil is null ? BackendHealth.Up : BackendHealth.Down;

    /// <summary>Applies a probe verdict; returns true when the combined health changed.</summary>
    public bool ApplyProbe(bool up, DateTimeOffset now)
    {
        var before = Health;
        ActiveUp = up;
        return Changed(before, now);
    }

    /// <summary>Ejects the backend for ejection × 2^(repeats), capped; returns the length.</summary>
    public TimeSpan Eject(PassiveHealthSettings settings, DateTimeOffset now)
    {
        // A backend that behaved for a whole max-ejection since its last ejection starts over.
        if (_lastEjectionEnded is { } ended && now - ended >= settings.MaxEjection)
        {
            Ejections = 0;
        }
        var length = TimeSpan.FromTicks(Math.Min(settings.MaxEjection.Ticks, settings.Ejection.Ticks * (1L << Math.Min(Ejections, 30))));
        Ejections++;
        EjectedUntil = now + length;
        return length;
    }

    /// <summary>Ends an ejection whose time is up; returns true when it did.</summary>
    public bool EndEjectionIfDue(DateTimeOffset now)
    {
        if (EjectedUntil is not { } until || now < until)
        {
            return false;
        }
        var before = Health;
        EjectedUntil = null;
        _lastEjectionEnded = now;
        Changed(before, now);
        return true;
    }

    /// <summary>Share of its weight the backend gets now: ramps linearly from its return over <paramref name="slowStart"/>.</summary>
    public double SlowStartFactor(TimeSpan slowStart, DateTimeOffset now)
    {
        if (slowStart <= TimeSpan.Zero || CameBackAt is not { } since || Health != BackendHealth.Up)
        {
            return 1.0;
        }
        var elapsed = now - since;
        // Never quite zero: a returning backend gets a trickle from its first moment.
        return elapsed >= slowStart ? 1.0 : Math.Max(0.01, elapsed / slowStart);
    }

    private bool Changed(BackendHealth before, DateTimeOffset now)
    {
        var after = Health;
        if (before == BackendHealth.Down && after == BackendHealth.Up)
        {
            CameBackAt = now;
        }
        return before != after;
    }
}

/// <summary>Counts consecutive probe outcomes against rise and fall (HAProxy's rule); pure logic.</summary>
public sealed class ProbeVerdict
{
    private readonly int _rise;
    private readonly int _fall;
    private int _successes;
    private int _failures;

    /// <summary>
    /// Starts undecided, leaning up: the first verdict comes after <paramref name="rise"/> passed or
    /// <paramref name="fall"/> failed checks, so a probe that takes over on another node reports what
    /// it finds, whatever the previous prober said.
    /// </summary>
    public ProbeVerdict(int rise, int fall)
    {
        _rise = rise;
        _fall = fall;
    }

    /// <summary>The current verdict (up until decided otherwise).</summary>
    public bool Up { get; private set; } = true;

    /// <summary>True once a first verdict has been reached.</summary>
    public bool Decided { get; private set; }

    /// <summary>True while the streak points towards the opposite state (check faster then).</summary>
    public bool Changing => Up ? _failures > 0 : _successes > 0;

    /// <summary>Records one check; returns true when the verdict is reached for the first time or flips.</summary>
    public bool Record(bool success)
    {
        if (success)
        {
            _failures = 0;
            _successes++;
            if ((!Up || !Decided) && _successes >= _rise)
            {
                Up = true;
                Decided = true;
                return true;
            }
        }
        else
        {
            _successes = 0;
            _failures++;
            if ((Up || !Decided) && _failures >= _fall)
            {
                Up = false;
                Decided = true;
                return true;
            }
        }
        return false;
    }
}
