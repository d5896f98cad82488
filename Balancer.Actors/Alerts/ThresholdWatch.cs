using System.Globalization;
using Akka.Actor;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Alerts;

/// <summary>A backend's error rate or p99 latency, over <c>alerts.thresholds.window</c> of this node's traffic, went over (or back under) its threshold.</summary>
/// <param name="Pool">The backend's pool.</param>
/// <param name="Backend">The backend.</param>
/// <param name="Kind"><c>error-rate</c> or <c>latency</c>.</param>
/// <param name="Over">True when it went over; false when it is back under half the threshold.</param>
/// <param name="Measured">What was measured, as a line for people.</param>
/// <param name="Threshold">The threshold, as configured.</param>
/// <param name="Requests">The requests (or answers, for latency) in the window.</param>
public sealed record BackendThresholdCrossed(string Pool, string Backend, string Kind, bool Over, string Measured, string Threshold, long Requests);

/// <summary>
/// Watches every backend's counters on this node (<c>balancer.alerts.thresholds</c>): every
/// sixth of the window it compares them with their values a window ago, and says so once when a
/// backend's share of failed requests (connect and response failures, and 5xx answers) or its p99
/// latency goes over its threshold, with at least <c>min-requests</c> in the window, and once when
/// it is back under (half the threshold, so that a backend hovering at the line does not flap).
/// Each node judges its own traffic, so each node sends its own alert.
/// </summary>
internal sealed class ThresholdWatch : ReceiveActor, IWithTimers
{
    private readonly ThresholdSettings _settings;
    private readonly PoolRegistry _pools;
    private readonly int _ticksPerWindow;
    private readonly Dictionary<(string Pool, string Backend), Queue<Sample>> _samples = new();
    private readonly HashSet<(string Pool, string Backend, string Kind)> _over = new();

    public ThresholdWatch(ThresholdSettings settings, PoolRegistry pools)
    {
        _settings = settings;
        _pools = pools;
        _ticksPerWindow = 6;
        Receive<Tick>(_ => Evaluate());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(ThresholdSettings settings, PoolRegistry pools) => Akka.Actor.Props.Create(() => new ThresholdWatch(settings, pools));

    protected override void PreStart() =>
        Timers.StartPeriodicTimer("tick", Tick.Instance, _settings.Window / _ticksPerWindow);

    private void Evaluate()
    {
        var seen = new HashSet<(string, string)>();
        foreach (var handle in _pools.Pools.Values)
        {
            foreach (var backend in handle.Snapshot.Backends)
            {
                var key = (handle.Name, backend.Name);
                seen.Add(key);
                if (!_samples.TryGetValue(key, out var samples))
                {
                    _samples[key] = samples = new Queue<Sample>();
                }
                var now = Sample.Of(backend.Counters, handle.Snapshot.Settings.Passive.Count5xx);
                if (samples.Count > 0 && now.Requests < samples.Peek().Requests)
                {
                    // New counters (the pool was rebuilt): the window starts again.
                    samples.Clear();
                }
                samples.Enqueue(now);
                if (samples.Count <= _ticksPerWindow)
                {
                    continue;
                }
                var then = samples.Dequeue();
                Judge(handle.Name, backend.Name, then, now);
            }
        }
        foreach (var gone in _samples.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            _samples.Remove(gone);
            _over.RemoveWhere(o => o.Pool == gone.Item1 && o.Backend == gone.Item2);
        }
    }

    private void Judge(string pool, string backend, Sample then, Sample now)
    {
        var requests = now.Requests - then.Requests;
        if (_settings.ErrorRate > 0)
        {
            var failed = now.Failed - then.Failed;
            // Requests count when they start and failures when they end: a window can hold a few
            // more endings than starts.
            var judged = Math.Max(requests, failed);
            var rate = judged > 0 ? (double)failed / judged : 0;
            Cross(pool, backend, "error-rate", judged, rate >= _settings.ErrorRate, rate < _settings.ErrorRate / 2,
                string.Create(CultureInfo.InvariantCulture, $"{rate * 100:0.#}% of {judged} requests failed"),
                string.Create(CultureInfo.InvariantCulture, $"{_settings.ErrorRate * 100:0.#}%"));
        }
        if (_settings.P99Latency > TimeSpan.Zero)
        {
            // The histogram knows a latency only to within its bucket: over when even the bucket's
            // lower bound reaches the threshold, under when its upper bound is within half of it.
            var (lower, upper) = P99(then.Latency, now.Latency);
            var answered = now.Latency[^1] - then.Latency[^1];
            var threshold = _settings.P99Latency.TotalSeconds;
            Cross(pool, backend, "latency", answered, lower >= threshold, upper <= threshold / 2,
                double.IsPositiveInfinity(upper)
                    ? string.Create(CultureInfo.InvariantCulture, $"p99 over {lower * 1000:0.#} ms")
                    : string.Create(CultureInfo.InvariantCulture, $"p99 between {lower * 1000:0.#} and {upper * 1000:0.#} ms"),
                string.Create(CultureInfo.InvariantCulture, $"{_settings.P99Latency.TotalMilliseconds:0} ms"));
        }
    }

    private void Cross(string pool, string backend, string kind, long requests, bool over, bool under, string measured, string threshold)
    {
        var key = (pool, backend, kind);
        if (!_over.Contains(key) && over && requests >= _settings.MinRequests)
        {
            _over.Add(key);
            Context.System.EventStream.Publish(new BackendThresholdCrossed(pool, backend, kind, true, measured, threshold, requests));
        }
        // Back under only on enough traffic: a backend ejected (and so without requests) is not well again.
        else if (_over.Contains(key) && under && requests >= _settings.MinRequests)
        {
            _over.Remove(key);
            Context.System.EventStream.Publish(new BackendThresholdCrossed(pool, backend, kind, false, measured, threshold, requests));
        }
    }

    /// <summary>The bounds of the histogram bucket holding the 99th percentile of what was answered in between (upper: infinity past the last bound).</summary>
    private static (double Lower, double Upper) P99(long[] then, long[] now)
    {
        var bounds = BackendCounters.LatencyBoundsSeconds;
        var total = now[^1] - then[^1];
        if (total <= 0)
        {
            return (0, 0);
        }
        var rank = (long)Math.Ceiling(total * 0.99);
        for (var i = 0; i < now.Length; i++)
        {
            if (now[i] - then[i] >= rank)
            {
                return (i == 0 ? 0 : bounds[i - 1], i < bounds.Length ? bounds[i] : double.PositiveInfinity);
            }
        }
        return (bounds[^1], double.PositiveInfinity);
    }

    private sealed record Sample(long Requests, long Failed, long[] Latency)
    {
        // A 5xx answer is a response failure too when the pool counts 5xx for passive health.
        public static Sample Of(BackendCounters counters, bool fiveHundredsFail) =>
            new(counters.Requests, counters.ConnectFailures + counters.ResponseFailures + (fiveHundredsFail ? 0 : counters.Responses(5)), counters.LatencyHistogram());
    }

    private sealed class Tick
    {
        public static readonly Tick Instance = new();
        private Tick() { }
    }
}
