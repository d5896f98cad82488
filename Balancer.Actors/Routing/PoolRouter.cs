using Akka.Actor;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Routing;

/// <summary>
/// The connection-routing actor of one pool: the only writer of the pool's <see cref="PoolSnapshot"/>.
/// It folds configuration and backend state into a new immutable snapshot and publishes it with a
/// volatile swap; the data plane never sends it a message per request.
/// </summary>
internal sealed partial class PoolRouter : ReceiveActor
{
    private readonly PoolHandle _handle;
    private readonly PickerState _pickerState;
    private readonly Dictionary<string, BackendCounters> _counters = new();
    private readonly Dictionary<string, BackendRuntimeState> _states = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private PoolSettings _settings;
    private long _version;

    private readonly PoolRegistry _registry;

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
            Publish();
            Context.System.EventStream.Publish(new PoolConfigChanged(_settings.Name, _version, _settings));
        });
        Receive<SetBackendState>(set =>
        {
            _states[set.Backend] = set.State;
            Publish();
        });
        Receive<GetSnapshot>(_ => Sender.Tell(_handle.Snapshot));
    }

    public static Props Props(PoolSettings settings, PoolRegistry registry, PickerState? pickerState = null) =>
        Akka.Actor.Props.Create(() => new PoolRouter(settings, registry, pickerState));

    protected override void PreStart() =>
        _log.Info("pool {0}: {1} backends, algorithm {2}", _settings.Name, _settings.Backends.Length, _settings.Algorithm);

    private void Publish()
    {
        var snapshot = BuildSnapshot();
        _handle.Publish(snapshot);
        if (snapshot.Panic)
        {
            _log.Warning("pool {0}: PANIC: only {1} of {2} backends healthy; routing to every backend not in maintenance",
                _settings.Name, snapshot.Backends.Count(b => b.Healthy), snapshot.Backends.Length);
        }
    }

    private PoolSnapshot BuildSnapshot() => PoolSnapshotBuilder.Build(
        ++_version,
        _settings,
        name => _states.TryGetValue(name, out var state) ? state : BackendRuntimeState.Default,
        name => _counters.TryGetValue(name, out var counters) ? counters : _counters[name] = new BackendCounters(),
        _pickerState);
}
