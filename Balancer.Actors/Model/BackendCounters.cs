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
            Interlocked.Increment(ref _consecutiveFailures);
        }
    }

    /// <summary>A started request or connection could not reach the backend.</summary>
    public void ConnectFailed()
    {
        Interlocked.Decrement(ref _inFlight);
        Interlocked.Increment(ref _connectFailures);
        Interlocked.Increment(ref _consecutiveFailures);
    }
}
