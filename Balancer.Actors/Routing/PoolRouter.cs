using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Health;
using Balancer.Model;
using Balancer.Replication;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Routing;

/// <summary>
/// The connection-routing actor of one pool on one node: the only writer of the pool's
/// <see cref="PoolSnapshot"/>. It folds the HOCON configuration, the replicated runtime changes
/// (admin state, weights, backends added or removed on any node), the replicated probe verdicts,
/// this node's passive failure counts and slow start into a new immutable snapshot and publishes it
/// with a volatile swap; the data plane never sends it a message per request. Time comes from the
/// ActorSystem's scheduler so tests can drive it.
/// </summary>
public sealed partial class PoolRouter : ReceiveActor, IWithTimers
{
    /// <summary>How often passive failure counts, ejections and slow start are folded in.</summary>
    internal static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(200);

    private readonly PoolHandle _handle;
    private readonly AlgorithmState _algorithmState;
    private PoolSettings _configured;
    // Backends registered in etcd, beside the configured ones.
    private ImmutableArray<BackendSettings> _registered;
    private readonly IWriteConsistency _adminWrite;
    private readonly Dictionary<string, BackendCounters> _counters;
    private readonly Dictionary<string, BackendTracker> _trackers;
    private readonly Dictionary<string, BackendOverride> _overrides = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<object> _pendingEvents = new();
    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly UniqueAddress _self = Cluster.Get(Context.System).SelfUniqueAddress;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private ImmutableDictionary<string, HealthRecord> _health = ImmutableDictionary<string, HealthRecord>.Empty;
    private PoolSettings _settings;
    private long _version;
    private bool _panic;

    private readonly string _role;

    // Started where an earlier router of the pool left off: the node may be serving before it is a
    // member again (see ApplyHealth).
    private readonly bool _carriedOn;

    public PoolRouter(PoolSettings settings, PoolHandle handle, AlgorithmState? algorithmState, TimeSpan writeTimeout, string role = "")
    {
        _role = role;
        // Started again (an actor restart, a new incarnation) after a reload: what the reload configured.
        settings = handle.Configured ?? settings;
        _configured = settings;
        _registered = handle.Registered;
        _settings = settings;
        _adminWrite = new WriteMajority(writeTimeout);
        _algorithmState = algorithmState ?? new AlgorithmState();
        // The handle exists before any actor runs (the extension makes one per configured pool),
        // so that no frontend or embedder ever finds its pool missing.
        _handle = handle;
        _trackers = handle.Trackers;
        _counters = handle.Counters;
        if (handle.Snapshot.Version > 0)
        {
            _carriedOn = true;
            CarryOn(handle.Snapshot);
        }
        _handle.Publish(BuildSnapshot());
        _handle.PublishRouter(Self);

        Receive<SetAdminState>(set => Change(set.Backend, set.State, o => o with { AdminState = set.State }, $"admin state {Name(set.State)}"));
        Receive<SetWeight>(set =>
        {
            if (!BackendRules.IsValidWeight(set.Weight))
            {
                Sender.Tell(new Status.Failure(new ArgumentOutOfRangeException(nameof(set.Weight), $"weight must be {BackendRules.WeightRange}, got {set.Weight}")));
                return;
            }
            Change(set.Backend, set.Weight, o => o with { Weight = set.Weight }, $"weight {set.Weight}");
        });
        Receive<AddBackend>(OnAddBackend);
        Receive<RemoveBackend>(remove => Change(remove.Backend, remove.Backend, o => o with { Removed = true }, "removed"));
        Receive<Changed>(changed =>
        {
            if (changed.Key.Equals(ReplicatedKeys.RuntimeConfig))
            {
                OnRuntimeConfig(changed.Get(ReplicatedKeys.RuntimeConfig));
            }
            else if (changed.Key.Equals(ReplicatedKeys.Health))
            {
                // A verdict in a newer node's format is carried by the replica, not counted here.
                _health = changed.Get(ReplicatedKeys.Health).Entries.Where(e => e.Value.Opaque is null).ToImmutableDictionary();
                ApplyHealth();
            }
        });
        Receive<UpdateSuccess>(success =>
        {
            if (success.Request is PendingWrite pending)
            {
                pending.ReplyTo.Tell(new Status.Success(pending.Result));
            }
        });
        Receive<UpdateTimeout>(timeout =>
        {
            if (timeout.Request is PendingWrite pending)
            {
                pending.ReplyTo.Tell(new Status.Failure(new TimeoutException(
                    $"{pending.What}: applied on this node but not confirmed by a majority of nodes within {_adminWrite.Timeout.TotalSeconds:0.#}s; it spreads when they are reachable")));
            }
        });
        Receive<ModifyFailure>(failure =>
        {
            if (failure.Request is PendingWrite pending)
            {
                pending.ReplyTo.Tell(new Status.Failure(failure.Cause));
            }
        });
        Receive<StoreFailure>(failure =>
        {
            if (failure.Request is PendingWrite pending)
            {
                // Refused when a majority could not store it: this node's store, others', or both.
                var local = Replication.DurableStoreHealth.Get(Context.System).Failure;
                var why = local is null
                    ? "stored on this node, but a majority of nodes could not store it durably"
                    : $"not stored durably on this node ({local.Reason}) nor by a majority";
                _log.Error("{0}: applied and replicated, but {1}", pending.What, why);
                pending.ReplyTo.Tell(new Status.Failure(new IOException(
                    $"{pending.What}: applied and replicated, but {why}; each node stores it when its store can write again")));
            }
        });
        // Every-node placement votes among current members: a member that comes or goes changes the count.
        Receive<ClusterEvent.IMemberEvent>(_ =>
        {
            if (_settings.HealthCheck.Placement == ProbePlacement.EveryNode)
            {
                ApplyHealth();
            }
        });
        Receive<Reconfigure>(reconfigure =>
        {
            // A reload: the configured part is replaced; runtime changes (admin states, weights,
            // backends added or removed) and what is known of each backend's health carry over.
            var placementWas = _configured.HealthCheck.Placement;
            _configured = reconfigure.Settings;
            _handle.Configured = reconfigure.Settings;
            if (placementWas != ProbePlacement.EveryNode && reconfigure.Settings.HealthCheck.Placement == ProbePlacement.EveryNode)
            {
                _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
            }
            var self = Self;
            foreach (var counters in _counters.Values)
            {
                counters.SetFailureAlarm(reconfigure.Settings.Passive.ConsecutiveFailures, () => self.Tell(Tick.Instance));
            }
            _log.Info("pool {0}: configuration reloaded: {1} backends, algorithm {2}", _configured.Name, _configured.Backends.Length, _configured.Algorithm);
            Recompute("configuration reloaded");
            // Checks turned off: what they last said no longer holds a backend out.
            ApplyHealth();
            Sender.Tell(Akka.Done.Instance);
        });
        Receive<SetRegistered>(registered =>
        {
            _registered = registered.Backends;
            _handle.Registered = registered.Backends;
            Recompute("etcd registry");
        });
        Receive<Tick>(_ => OnTick());
        Receive<GetSnapshot>(_ => Sender.Tell(_handle.Snapshot));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>
    /// An earlier router of this pool published the live snapshot: the node rejoined its cluster as a
    /// new incarnation (its data plane kept serving), or this actor restarted. Carry on from it and
    /// from the backends' trackers and counters (kept on the handle), those added at runtime
    /// included, so the data plane takes no step back while the replicated state is read again.
    /// </summary>
    private void CarryOn(PoolSnapshot live)
    {
        _version = live.Version;
        _settings = live.Settings;
        var self = Self;
        foreach (var counters in _counters.Values)
        {
            counters.SetFailureAlarm(_settings.Passive.ConsecutiveFailures, () => self.Tell(Tick.Instance));
        }
    }

    internal static Props Props(PoolSettings settings, PoolHandle handle, TimeSpan writeTimeout, string role = "", AlgorithmState? algorithmState = null) =>
        Akka.Actor.Props.Create(() => new PoolRouter(settings, handle, algorithmState, writeTimeout, role));

    protected override void PreStart()
    {
        _log.Info("pool {0}: {1} backends, algorithm {2}", _settings.Name, _settings.Backends.Length, _settings.Algorithm);
        _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.RuntimeConfig, Self));
        _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.Health, Self));
        if (_settings.HealthCheck.Placement == ProbePlacement.EveryNode)
        {
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
        }
        Timers.StartPeriodicTimer("tick", Tick.Instance, TickInterval);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private DateTimeOffset Now => Context.System.Scheduler.Now;

    /// <summary>Applies a runtime change here at once, then replicates it; the caller hears once a majority has it.</summary>
    private void Change(string backend, object result, Func<BackendOverride, BackendOverride> modify, string what)
    {
        if (!_settings.Backends.Any(b => b.Name == backend))
        {
            Sender.Tell(new Status.Failure(new KeyNotFoundException(
                $"pool {_settings.Name} has no backend \"{backend}\" (backends: {string.Join(", ", _settings.Backends.Select(b => b.Name))})")));
            return;
        }
        var key = BackendOverride.KeyOf(_settings.Name, backend);
        var current = _overrides.TryGetValue(key, out var found) ? found : new BackendOverride(_settings.Name, backend, null, null, null, false, Now);
        var changed = modify(current) with { ChangedAt = Now };
        Write(key, changed, result, $"pool {_settings.Name} backend {backend}: {what}");
    }

    private void OnAddBackend(AddBackend add)
    {
        var problems = new List<string>();
        if (!BackendRules.IsValidName(add.Backend))
        {
            problems.Add($"backend name \"{add.Backend}\" must use {BackendRules.NameRule}");
        }
        if (!EndpointAddress.TryParse(add.Address, out _, out var addressError))
        {
            problems.Add($"address: {addressError}");
        }
        if (add.Weight is { } weight && !BackendRules.IsValidWeight(weight))
        {
            problems.Add($"weight must be {BackendRules.WeightRange}, got {weight}");
        }
        if (_settings.Backends.Any(b => b.Name == add.Backend))
        {
            problems.Add($"pool {_settings.Name} already has a backend \"{add.Backend}\"");
        }
        if (problems.Count > 0)
        {
            Sender.Tell(new Status.Failure(new ArgumentException(string.Join("; ", problems))));
            return;
        }
        var key = BackendOverride.KeyOf(_settings.Name, add.Backend);
        Write(key, new BackendOverride(_settings.Name, add.Backend, add.Address, add.Weight, null, false, Now), add.Backend,
            $"pool {_settings.Name}: backend {add.Backend} ({add.Address}) added");
    }

    private void Write(string key, BackendOverride value, object result, string what)
    {
        _overrides[key] = value;
        Recompute(what);
        _replicator.Tell(Dsl.Update(ReplicatedKeys.RuntimeConfig, LWWDictionary<string, BackendOverride>.Empty, _adminWrite,
            new PendingWrite(Sender, result, what), map => map.SetItem(_self, key, value)));
    }

    private void OnRuntimeConfig(LWWDictionary<string, BackendOverride> map)
    {
        var prefix = _settings.Name + "/";
        var mine = map.Entries.Where(e => e.Key.StartsWith(prefix, StringComparison.Ordinal) && e.Value.Opaque is null).ToDictionary(e => e.Key, e => e.Value);
        if (mine.Count == _overrides.Count && mine.All(e => _overrides.TryGetValue(e.Key, out var v) && v == e.Value))
        {
            return;
        }
        _overrides.Clear();
        foreach (var (key, value) in mine)
        {
            _overrides[key] = value;
        }
        Recompute("replicated runtime change");
    }

    /// <summary>Rebuilds the effective backends (configured + added − removed) and admin states from the overrides.</summary>
    private void Recompute(string what)
    {
        var backends = ImmutableArray.CreateBuilder<BackendSettings>();
        foreach (var configured in _configured.Backends)
        {
            var key = BackendOverride.KeyOf(_configured.Name, configured.Name);
            if (_overrides.TryGetValue(key, out var o) && o.Removed)
            {
                continue;
            }
            backends.Add(o?.Address is { } address && EndpointAddress.TryParse(address, out var moved, out _) ? configured with { Address = moved } : configured);
        }
        foreach (var registered in _registered)
        {
            // A configured backend of the same name stays as configured.
            if (_configured.Backends.Any(b => b.Name == registered.Name)
                || _overrides.TryGetValue(BackendOverride.KeyOf(_configured.Name, registered.Name), out var o) && o.Removed)
            {
                continue;
            }
            backends.Add(registered);
        }
        foreach (var o in _overrides.Values.OrderBy(o => o.Backend, StringComparer.Ordinal))
        {
            if (o.Removed || o.Address is null || _configured.Backends.Any(b => b.Name == o.Backend) || _registered.Any(b => b.Name == o.Backend)
                || !EndpointAddress.TryParse(o.Address, out var address, out _))
            {
                continue;
            }
            backends.Add(new BackendSettings(o.Backend, address, o.Weight ?? _settings.DefaultWeight));
        }
        var previous = _settings;
        _settings = _configured with { Backends = backends.ToImmutable() };

        foreach (var backend in _settings.Backends)
        {
            var tracker = Tracker(backend.Name);
            _overrides.TryGetValue(BackendOverride.KeyOf(_settings.Name, backend.Name), out var o);
            var state = o?.AdminState ?? BackendAdminState.Ready;
            var weight = o?.Weight;
            if (tracker.AdminState != state || tracker.Weight != weight)
            {
                var old = tracker.AdminState;
                tracker.AdminState = state;
                tracker.Weight = weight;
                _log.Info("pool {0}: backend {1} admin state {2}, weight {3}", _settings.Name, backend.Name, Name(state), weight ?? backend.Weight);
                _pendingEvents.Add(new BackendAdminStateChanged(_settings.Name, backend.Name, old, state, weight ?? backend.Weight));
            }
        }
        if (!previous.Backends.SequenceEqual(_settings.Backends))
        {
            _log.Info("pool {0}: backends now {1} ({2})", _settings.Name, string.Join(", ", _settings.Backends.Select(b => $"{b.Name}={b.Address}")), what);
            _pendingEvents.Add(new PoolConfigChanged(_settings.Name, _version + 1, _settings));
            ApplyHealth(publish: false);
        }
        Publish();
    }

    /// <summary>
    /// Folds the replicated probe verdicts into the active view of each backend: the latest verdict
    /// (sharded placement: one prober at a time) or the majority of the current members' verdicts
    /// (every-node placement).
    /// </summary>
    private void ApplyHealth(bool publish = true)
    {
        var now = Now;
        var changed = false;
        var members = _settings.HealthCheck.Placement == ProbePlacement.EveryNode
            ? _cluster.State.Members.Where(m => m.Status == MemberStatus.Up && (_role.Length == 0 || m.HasRole(_role))).Select(m => m.Address.ToString()).ToHashSet()
            : null;
        // Sharded: the latest verdict of a member still in the cluster (a removed member's records stay behind in the map).
        var present = _cluster.State.Members.Where(m => m.Status is not (MemberStatus.Removed or MemberStatus.Down)).Select(m => m.Address.ToString()).ToHashSet();
        // A node serving while it rejoins (not a member again yet) goes by what it probes itself.
        if (_carriedOn && _cluster.SelfMember.Status != MemberStatus.Up)
        {
            var self = _cluster.SelfAddress.ToString();
            members = members is null ? null : [self];
            present.Add(self);
        }
        if (_settings.HealthCheck.Kind == HealthCheckKind.None)
        {
            foreach (var backend in _settings.Backends)
            {
                var tracker = Tracker(backend.Name);
                var old = tracker.Health;
                if (tracker.ApplyProbe(true, now))
                {
                    HealthChanged(backend.Name, old, tracker.Health, "health checks are off");
                    changed = true;
                }
            }
            if (changed && publish)
            {
                Publish();
            }
            return;
        }
        foreach (var backend in _settings.Backends)
        {
            var prefix = $"{_settings.Name}/{backend.Name}/";
            var records = _health.Where(e => e.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(e => e.Value).ToList();
            if (HealthFolding.ClusterVerdict(records, members, present) is not { } verdict)
            {
                continue;
            }
            var (up, reason) = verdict;
            var tracker = Tracker(backend.Name);
            var old = tracker.Health;
            if (tracker.ApplyProbe(up, now))
            {
                HealthChanged(backend.Name, old, tracker.Health, "health check: " + reason);
                changed = true;
            }
        }
        if (changed && publish)
        {
            Publish();
        }
    }

    private void OnTick()
    {
        var now = Now;
        var changed = false;
        var passive = _settings.Passive;
        var ejected = _settings.Backends.Count(b => Tracker(b.Name).EjectedUntil is not null);
        var budget = HealthFolding.EjectionBudget(_settings.Backends.Length, passive);
        foreach (var backend in _settings.Backends)
        {
            var tracker = Tracker(backend.Name);
            var counters = Counters(backend.Name);
            if (tracker.EjectedUntil is not null)
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
            if (HealthFolding.ShouldEject(counters.ConsecutiveFailures, ejected, budget, passive))
            {
                var failures = counters.ConsecutiveFailures;
                var wasUp = tracker.Health == BackendHealth.Up;
                var length = tracker.Eject(passive, now);
                counters.ResetConsecutiveFailures();
                counters.CountEjection();
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
        var ramps = _settings.Algorithm is not (Algorithms.ConsistentHash or Algorithms.Maglev)
            && (_handle.Snapshot.Backends.Any(b => b.SlowStartFactor < 1) || _settings.Backends.Any(b => Tracker(b.Name).SlowStartFactor(_settings.SlowStart, now) < 1));
        if (changed || ramps)
        {
            Publish();
        }
    }

    private void HealthChanged(string backend, BackendHealth old, BackendHealth now, string reason)
    {
        Tracker(backend).HealthReason = reason;
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
            Context.System.EventStream.Publish(new PoolPanicChanged(_settings.Name, _panic, snapshot.Backends.Count(b => b.Healthy), snapshot.Backends.Length));
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
                return new BackendRuntimeState(tracker.AdminState, tracker.Health == BackendHealth.Up, tracker.Weight, tracker.SlowStartFactor(_settings.SlowStart, now), tracker.HealthReason);
            },
            Counters,
            _algorithmState);
    }

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
