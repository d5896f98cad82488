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
    private long _ejections;
    private long _latencySumMicros;
    private FailureAlarm? _alarm;
    // 1xx..5xx, and the upstream latency histogram (one slot per bound plus +Inf).
    private readonly long[] _responseClasses = new long[5];
    private readonly long[] _latencyBuckets = new long[LatencyBoundsSeconds.Length + 1];

    /// <summary>Upper bounds (seconds) of the upstream latency histogram buckets.</summary>
    public static readonly double[] LatencyBoundsSeconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

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

    /// <summary>Times passive health ejected the backend.</summary>
    public long Ejections => Volatile.Read(ref _ejections);

    /// <summary>Responses received from the backend whose status is in class <paramref name="statusClass"/> (1..5).</summary>
    public long Responses(int statusClass) => statusClass is >= 1 and <= 5 ? Volatile.Read(ref _responseClasses[statusClass - 1]) : 0;

    /// <summary>Cumulative counts of the latency histogram: entry i counts responses at or under bound i; the last counts all.</summary>
    public long[] LatencyHistogram()
    {
        var cumulative = new long[_latencyBuckets.Length];
        long running = 0;
        for (var i = 0; i < _latencyBuckets.Length; i++)
        {
            running += Volatile.Read(ref _latencyBuckets[i]);
            cumulative[i] = running;
        }
        return cumulative;
    }

    /// <summary>
    /// The <paramref name="quantile"/> (0.5, 0.99) of the latencies answered between two readings of
    /// <see cref="LatencyHistogram"/>, interpolated within its bucket as Prometheus'
    /// histogram_quantile does; null when nothing was answered in between, or when the counts went
    /// down (the backend was removed and added again). Past the last bound it is that bound.
    /// </summary>
    public static double? Quantile(double quantile, IReadOnlyList<long> then, IReadOnlyList<long> now)
    {
        var total = now[^1] - then[^1];
        if (total <= 0 || then.Count != now.Count || then.Where((count, i) => now[i] < count).Any())
        {
            return null;
        }
        var rank = quantile * total;
        long below = 0;
        for (var i = 0; i < LatencyBoundsSeconds.Length; i++)
        {
            var upTo = now[i] - then[i];
            if (upTo >= rank)
            {
                var lower = i == 0 ? 0 : LatencyBoundsSeconds[i - 1];
                var inBucket = upTo - below;
                return inBucket <= 0 ? lower : lower + (LatencyBoundsSeconds[i] - lower) * (rank - below) / inBucket;
            }
            below = upTo;
        }
        return LatencyBoundsSeconds[^1];
    }

    /// <summary>Sum of every observed upstream latency, in seconds.</summary>
    public double LatencySumSeconds => Volatile.Read(ref _latencySumMicros) / 1e6;

    private readonly long[] _grpcStatuses = new long[17];

    /// <summary>gRPC calls that ended with status <paramref name="code"/> (0-16), from the backend's grpc-status.</summary>
    public long GrpcStatuses(int code) => code is >= 0 and <= 16 ? Volatile.Read(ref _grpcStatuses[code]) : 0;

    /// <summary>A gRPC call ended with the backend's grpc-status <paramref name="code"/>.</summary>
    public void ObserveGrpcStatus(int code)
    {
        if (code is >= 0 and <= 16)
        {
            Interlocked.Increment(ref _grpcStatuses[code]);
        }
    }

    /// <summary>
    /// A response came back from the backend: counts its status class and its latency (from the
    /// moment the request was sent until the response headers, as a Stopwatch timestamp delta).
    /// </summary>
    public void ObserveResponse(int statusCode, long elapsedTimestamp)
    {
        var statusClass = statusCode / 100;
        if (statusClass is >= 1 and <= 5)
        {
            Interlocked.Increment(ref _responseClasses[statusClass - 1]);
        }
        var seconds = elapsedTimestamp / (double)System.Diagnostics.Stopwatch.Frequency;
        var bucket = 0;
        while (bucket < LatencyBoundsSeconds.Length && seconds > LatencyBoundsSeconds[bucket])
        {
            bucket++;
        }
        Interlocked.Increment(ref _latencyBuckets[bucket]);
        Interlocked.Add(ref _latencySumMicros, (long)(seconds * 1e6));
    }

    /// <summary>Passive health ejected the backend.</summary>
    public void CountEjection() => Interlocked.Increment(ref _ejections);

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
