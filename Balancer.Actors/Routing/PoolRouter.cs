using Akka.Actor;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Health;
using Balancer.Model;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Routing;

/// <summary>
/// The connection-routing actor of one pool: the only writer of the pool's <see cref="PoolSnapshot"/>.
/// It folds configuration, probe verdicts, passive failure counts, admin states and slow start into
/// a new immutable snapshot and publishes it with a volatile swap; the data plane never sends it a
/// message per request. Time comes from the ActorSystem's scheduler so tests can drive it.
/// </summary>
internal sealed partial class PoolRouter : ReceiveActor, IWithTimers
{
    /// <summary>How often passive failure counts, ejections and slow start are folded in.</summary>
    internal static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(200);

    private readonly PoolRegistry _registry;
    private readonly PoolHandle _handle;
    private readonly PickerState _pickerState;
    private readonly Dictionary<string, BackendCounters> _counters = new();
    private readonly Dictionary<string, BackendTracker> _trackers = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<BackendHealthChanged> _pendingEvents = new();
    private PoolSettings _settings;
    private long _version;
    private bool _panic;

    public PoolRouter(PoolSettings settings, PoolRegistry registry, PickerState? pickerState)
    {
        _settings = settings;
        _registry = registry;
        _pickerState = pickerState ?? new PickerState();
        // The handle may already exist: the extension registers every configured pool before any
        // frontend starts, so that no frontend ever finds its pool missing.
        if (registry.Find(settings.Name) is { } existing)
        {
            _handle = existing;
            _handle.Publish(BuildSnapshot());
        }
        else
        {
            _handle = new PoolHandle(BuildSnapshot());
            registry.Set(_handle);
        }

        Receive<UpdateSettings>(update =>
        {
            _settings = update.Settings;
            var self = Self;
            foreach (var counters in _counters.Values)
            {
                counters.SetFailureAlarm(_settings.Passive.ConsecutiveFailures, () => self.Tell(Tick.Instance));
            }
            Publish();
            Context.System.EventStream.Publish(new PoolConfigChanged(_settings.Name, _version, _settings));
        });
        Receive<SetAdminState>(set =>
        {
            if (!TryGetTracker(set.Backend, out var tracker))
            {
                return;
            }
            var old = tracker.AdminState;
            tracker.AdminState = set.State;
            if (old != set.State)
            {
                // Publish before answering: whoever asked sees the new routing once answered.
                Publish();
                _log.Info("pool {0}: backend {1} admin state {2} -> {3}", _settings.Name, set.Backend, Name(old), Name(set.State));
                Context.System.EventStream.Publish(new BackendAdminStateChanged(_settings.Name, set.Backend, old, set.State, WeightOf(set.Backend)));
            }
            Sender.Tell(new Status.Success(set.State));
        });
        Receive<SetWeight>(set =>
        {
            if (set.Weight is < 0 or > 10000)
            {
                Sender.Tell(new Status.Failure(new ArgumentOutOfRangeException(nameof(set.Weight), $"weight must be 0..10000, got {set.Weight}")));
                return;
            }
            if (!TryGetTracker(set.Backend, out var tracker))
            {
                return;
            }
            tracker.Weight = set.Weight;
            Publish();
            _log.Info("pool {0}: backend {1} weight set to {2}", _settings.Name, set.Backend, set.Weight);
            Context.System.EventStream.Publish(new BackendAdminStateChanged(_settings.Name, set.Backend, tracker.AdminState, tracker.AdminState, set.Weight));
            Sender.Tell(new Status.Success(set.Weight));
        });
        Receive<BackendProbed>(probed =>
        {
            if (!_trackers.TryGetValue(probed.Backend, out var tracker))
            {
                return;
            }
            var old = tracker.Health;
            if (tracker.ApplyProbe(probed.Up, Now))
            {
                HealthChanged(probed.Backend, old, tracker.Health, "health check: " + probed.Reason);
                Publish();
            }
            else if (!probed.Up)
            {
                _log.Info("pool {0}: backend {1} fails its health check ({2}) while ejected", _settings.Name, probed.Backend, probed.Reason);
            }
        });
        Receive<Tick>(_ => OnTick());
        Receive<GetSnapshot>(_ => Sender.Tell(_handle.Snapshot));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(PoolSettings settings, PoolRegistry registry, PickerState? pickerState = null) =>
        Akka.Actor.Props.Create(() => new PoolRouter(settings, registry, pickerState));

    protected override void PreStart()
    {
        _log.Info("pool {0}: {1} backends, algorithm {2}", _settings.Name, _settings.Backends.Length, _settings.Algorithm);
        Timers.StartPeriodicTimer("tick", Tick.Instance, TickInterval);
    }

    private DateTimeOffset Now => Context.System.Scheduler.Now;

    private void OnTick()
    {
        var now = Now;
        var changed = false;
        var passive = _settings.Passive;
        var ejected = _trackers.Values.Count(t => t.EjectedUntil is not null);
        var maxEjected = passive.MaxEjectedPercent <= 0 ? 0 : Math.Max(1, (int)Math.Floor(_settings.Backends.Length * passive.MaxEjectedPercent));
        foreach (var backend in _settings.Backends)
        {
            var tracker = Tracker(backend.Name);
            var counters = Counters(backend.Name);
            if (tracker.EjectedUntil is { } until)
            {
                if (tracker.EndEjectionIfDue(now))
                {
                    counters.ResetConsecutiveFailures();
                    ejected--;
                    if (tracker.Health == BackendHealth.Up)
                    {
                        HealthChanged(backend.Name, BackendHealth.Down, BackendHealth.Up, "passive: ejection ended");
                    }
                    changed = true;
                }
                continue;
            }
            if (passive.ConsecutiveFailures > 0 && counters.ConsecutiveFailures >= passive.ConsecutiveFailures)
            {
                if (ejected >= maxEjected)
                {
                    continue;
                }
                var failures = counters.ConsecutiveFailures;
                var wasUp = tracker.Health == BackendHealth.Up;
                var length = tracker.Eject(passive, now);
                counters.ResetConsecutiveFailures();
                ejected++;
                if (wasUp)
                {
                    HealthChanged(backend.Name, BackendHealth.Up, BackendHealth.Down,
                        $"passive: {failures} consecutive failures, ejected for {length.TotalSeconds:0.#}s (ejection #{tracker.Ejections})");
                }
                changed = true;
            }
        }
        // Slow start ramps weights continuously: republish while any backend is still ramping.
        if (changed || _trackers.Values.Any(t => t.SlowStartFactor(_settings.SlowStart, now) < 1) || _handle.Snapshot.Backends.Any(b => b.SlowStartFactor < 1))
        {
            Publish();
        }
    }

    private void HealthChanged(string backend, BackendHealth old, BackendHealth now, string reason)
    {
        if (now == BackendHealth.Down)
        {
            _log.Warning("pool {0}: backend {1} is DOWN: {2}", _settings.Name, backend, reason);
        }
        else
        {
            _log.Info("pool {0}: backend {1} is UP: {2}", _settings.Name, backend, reason);
        }
        // Announced by Publish, after the snapshot that reflects it is live.
        _pendingEvents.Add(new BackendHealthChanged(_settings.Name, backend, old, now, reason));
    }

    private void Publish()
    {
        var snapshot = BuildSnapshot();
        _handle.Publish(snapshot);
        foreach (var pending in _pendingEvents)
        {
            Context.System.EventStream.Publish(pending);
        }
        _pendingEvents.Clear();
        if (snapshot.Panic != _panic)
        {
            _panic = snapshot.Panic;
            if (_panic)
            {
                _log.Warning("pool {0}: PANIC: only {1} of {2} backends healthy (threshold {3:P0}); routing to every backend not in maintenance",
                    _settings.Name, snapshot.Backends.Count(b => b.Healthy), snapshot.Backends.Length, _settings.PanicThreshold);
            }
            else
            {
                _log.Info("pool {0}: out of panic: enough backends healthy again", _settings.Name);
            }
        }
    }

    private PoolSnapshot BuildSnapshot()
    {
        var now = Now;
        return PoolSnapshotBuilder.Build(
            ++_version,
            _settings,
            name =>
            {
                var tracker = Tracker(name);
                return new BackendRuntimeState(tracker.AdminState, tracker.Health == BackendHealth.Up, tracker.Weight, tracker.SlowStartFactor(_settings.SlowStart, now));
            },
            Counters,
            _pickerState);
    }

    private bool TryGetTracker(string backend, out BackendTracker tracker)
    {
        if (_settings.Backends.Any(b => b.Name == backend))
        {
            tracker = Tracker(backend);
            return true;
        }
        tracker = null!;
        Sender.Tell(new Status.Failure(new KeyNotFoundException(
            $"pool {_settings.Name} has no backend \"{backend}\" (backends: {string.Join(", ", _settings.Backends.Select(b => b.Name))})")));
        return false;
    }

    private int WeightOf(string backend) => Tracker(backend).Weight ?? _settings.Backends.First(b => b.Name == backend).Weight;

    private BackendTracker Tracker(string name) => _trackers.TryGetValue(name, out var tracker) ? tracker : _trackers[name] = new BackendTracker();

    private BackendCounters Counters(string name)
    {
        if (!_counters.TryGetValue(name, out var counters))
        {
            counters = _counters[name] = new BackendCounters();
            var self = Self;
            counters.SetFailureAlarm(_settings.Passive.ConsecutiveFailures, () => self.Tell(Tick.Instance));
        }
        return counters;
    }

    private static string Name(BackendAdminState state) => state.ToString().ToLowerInvariant();
}
