namespace Balancer.Model;

/// <summary>
/// Lock-free traffic counters of one backend, shared by every snapshot of its pool: the data plane
/// updates them with atomic operations, the pool's routing actor and the telemetry read them.
/// </summary>
public sealed class BackendCounters
{
    private long _inFlight;
    private long _requests;
    private long _connectFailures;
    private long _responseFailures;
    private long _consecutiveFailures;
    private FailureAlarm? _alarm;

    /// <summary>
    /// Calls <paramref name="onReached"/> once each time the failure streak reaches
    /// <paramref name="threshold"/>, so passive ejection reacts at once instead of on the next fold.
    /// </summary>
    public void SetFailureAlarm(long threshold, Action onReached) =>
        Volatile.Write(ref _alarm, threshold > 0 ? new FailureAlarm(threshold, onReached) : null);

    /// <summary>Requests or connections open on the backend right now.</summary>
    public long InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests or connections sent to the backend since start.</summary>
    public long Requests => Volatile.Read(ref _requests);

    /// <summary>Connections to the backend that could not be opened.</summary>
    public long ConnectFailures => Volatile.Read(ref _connectFailures);

    /// <summary>Requests that failed after connecting (reset, timeout, 5xx when counted).</summary>
    public long ResponseFailures => Volatile.Read(ref _responseFailures);

    /// <summary>Failures since the last success; passive health ejects on this.</summary>
    public long ConsecutiveFailures => Volatile.Read(ref _consecutiveFailures);

    /// <summary>A request or connection starts.</summary>
    public void Start()
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _requests);
    }

    /// <summary>A started request or connection ends.</summary>
    public void Finish(bool success)
    {
        Interlocked.Decrement(ref _inFlight);
        if (success)
        {
            if (Volatile.Read(ref _consecutiveFailures) != 0)
            {
                Volatile.Write(ref _consecutiveFailures, 0);
            }
        }
        else
        {
            Interlocked.Increment(ref _responseFailures);
            CountFailure();
        }
    }

    /// <summary>Forgets the failure streak (after an ejection, so the backend starts afresh).</summary>
    public void ResetConsecutiveFailures() => Volatile.Write(ref _consecutiveFailures, 0);

    /// <summary>A started request or connection ends for a reason that says nothing about the backend (the client went away).</summary>
    public void End() => Interlocked.Decrement(ref _inFlight);

    /// <summary>A started request or connection could not reach the backend.</summary>
    public void ConnectFailed()
    {
        Interlocked.Decrement(ref _inFlight);
        Interlocked.Increment(ref _connectFailures);
        CountFailure();
    }

    private void CountFailure()
    {
        var streak = Interlocked.Increment(ref _consecutiveFailures);
        if (Volatile.Read(ref _alarm) is { } alarm && streak == alarm.Threshold)
        {
            alarm.OnReached();
        }
    }

    private sealed record FailureAlarm(long Threshold, Action OnReached);
}
