using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Etcdserverpb;
using Google.Protobuf;

namespace Balancer.Configuration;

/// <summary>
/// Follows <c>balancer.config-source.etcd</c> on one node: lists every key under the prefix, then
/// watches it from the revision it listed. <c>PREFIX/config</c> goes to the node's
/// <see cref="ClusterConfigurationKeeper"/> as the cluster's configuration;
/// <c>PREFIX/pools/POOL/backends/NAME</c> become the backends each pool's router adds to its
/// configured ones. When etcd cannot be reached the node keeps what it had, says so
/// (<see cref="EtcdStatus"/>, an event), and lists everything again once it is back, so that
/// changes made meanwhile are caught up with. A value that cannot be used is refused with an event
/// naming its key; the rest applies.
/// </summary>
internal sealed class EtcdSource : ReceiveActor
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private readonly EtcdSettings _settings;
    private readonly IActorRef _keeper;
    private readonly IActorRef _pools;
    private readonly EtcdStatus _status;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, (string Value, long Revision)> _keys = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ImmutableArray<BackendSettings>> _sent = new(StringComparer.Ordinal);
    private readonly HashSet<string> _refused = new(StringComparer.Ordinal);
    private long _configRevision = -1;
    private bool _listedOnce;

    public EtcdSource(EtcdSettings settings, IActorRef keeper, IActorRef pools, EtcdStatus status, string cachePath = "")
    {
        _settings = settings;
        _cachePath = cachePath.Length == 0 ? null : cachePath;
        _keeper = keeper;
        _pools = pools;
        _status = status;
        Receive<Listed>(listed =>
        {
            // The copy of the last run never overrides what etcd itself said.
            if (listed.FromCache && _listedOnce)
            {
                return;
            }
            _keys.Clear();
            foreach (var (key, value, revision) in listed.Keys)
            {
                _keys[key] = (value, revision);
            }
            if (!listed.FromCache)
            {
                _listedOnce = true;
                Reachable(listed.Endpoint);
            }
            Apply(listed.Revision, reachable: !listed.FromCache);
        });
        Receive<Changed>(changed =>
        {
            foreach (var (key, value, revision) in changed.Keys)
            {
                if (value is null)
                {
                    _keys.Remove(key);
                }
                else
                {
                    _keys[key] = (value, revision);
                }
            }
            Apply(changed.Revision);
        });
        Receive<Unreachable>(unreachable =>
        {
            if (_status.Current.Reachable || _status.Current.Reason != unreachable.Reason)
            {
                var since = _status.Current.Reachable ? DateTimeOffset.UtcNow : _status.Current.Since;
                if (_status.Current.Reachable)
                {
                    _log.Warning("etcd {0} unreachable: {1}; this node keeps the configuration and backends it had", unreachable.Endpoint, unreachable.Reason);
                    Context.System.EventStream.Publish(new ConfigSourceReachability("etcd", false, unreachable.Endpoint, unreachable.Reason));
                }
                _status.Publish(new EtcdStatus.Snapshot(false, since, unreachable.Endpoint, unreachable.Reason, _status.Current.Revision));
            }
        });
        // A reload may have added pools: they get their registered backends too.
        Receive<ConfigurationApplied>(_ =>
        {
            _sent.Clear();
            SendRegistry();
        });
    }

    public static Props Props(EtcdSettings settings, IActorRef keeper, IActorRef pools, EtcdStatus status, string cachePath) =>
        Akka.Actor.Props.Create(() => new EtcdSource(settings, keeper, pools, status, cachePath));

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(ConfigurationApplied));
        // What etcd said last time, so that a node started while etcd is away still has its backends.
        if (_cachePath is not null && ReadCache(_cachePath) is { } cached)
        {
            _log.Info("etcd: starting from the {0} key(s) of revision {1} kept from the last run, until etcd answers", cached.Keys.Length, cached.Revision);
            Self.Tell(cached);
        }
        var self = Self;
        var stop = _stop;
        _ = Task.Run(() => FollowAsync(self, stop.Token)).ContinueWith(_ => stop.Dispose(), TaskScheduler.Default);
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        // Disposed by the loop once it has seen this.
        _stop.Cancel();
    }

    private readonly string? _cachePath;

    /// <summary>The keys as listed last, kept in the data directory (JSON, written whole and renamed into place).</summary>
    private sealed record Cache(long Revision, List<CachedKey> Keys);

    private sealed record CachedKey(string Key, string Value, long Revision);

    private static Listed? ReadCache(string path)
    {
        try
        {
            if (!File.Exists(path) || System.Text.Json.JsonSerializer.Deserialize<Cache>(File.ReadAllText(path)) is not { } cache)
            {
                return null;
            }
            return new Listed(cache.Revision, [.. cache.Keys.Select(k => (k.Key, k.Value, k.Revision))], FromCache: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    private void WriteCache(long revision)
    {
        if (_cachePath is null)
        {
            return;
        }
        try
        {
            var temporary = _cachePath + ".tmp";
            File.WriteAllText(temporary, System.Text.Json.JsonSerializer.Serialize(new Cache(revision, _keys.Select(k => new CachedKey(k.Key, k.Value.Value, k.Value.Revision)).ToList())));
            File.Move(temporary, _cachePath, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning("etcd: could not keep a copy of the keys in {0}: {1}", _cachePath, e.Message);
        }
    }

    private void Reachable(string endpoint)
    {
        if (!_status.Current.Reachable)
        {
            _log.Info("etcd {0} reachable again: catching up with what changed meanwhile", endpoint);
            Context.System.EventStream.Publish(new ConfigSourceReachability("etcd", true, endpoint, ""));
        }
        _status.Publish(new EtcdStatus.Snapshot(true, DateTimeOffset.UtcNow, endpoint, "", _status.Current.Revision));
    }

    private void Apply(long revision, bool reachable = true)
    {
        if (reachable)
        {
            _status.Publish(_status.Current with { Revision = revision });
            WriteCache(revision);
        }
        // The cluster's configuration: a new revision of its key (or its deletion) is a new version.
        var (text, configRevision) = _keys.TryGetValue(_settings.ConfigKey, out var config) ? (config.Value, config.Revision) : ("", 0L);
        if (configRevision != _configRevision && (_configRevision >= 0 || configRevision > 0))
        {
            _configRevision = configRevision;
            // Numbered by the key's revision (its deletion's, when deleted): the same on every node.
            _keeper.Tell(new ClusterConfigurationKeeper.FromSource(new ClusterConfiguration(
                configRevision > 0 ? configRevision : revision, text, $"etcd {_settings.ConfigKey}", DateTimeOffset.UtcNow, "", [], [])));
        }
        _configRevision = configRevision;
        SendRegistry();
    }

    /// <summary>Each pool's registered backends, sent to its router when they changed.</summary>
    private void SendRegistry()
    {
        var balancer = BalancerExtension.Get(Context.System);
        var pools = balancer.Pools.Pools;
        var configuration = balancer.Settings;
        var registered = new Dictionary<string, List<BackendSettings>>(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var (key, (value, _)) in _keys.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            if (!key.StartsWith(_settings.PoolsPrefix, StringComparison.Ordinal))
            {
                continue;
            }
            var parts = key[_settings.PoolsPrefix.Length..].Split('/');
            if (parts is not [var pool, "backends", var name] || !BackendRules.IsValidName(name))
            {
                problems.Add($"etcd key {key}: expected {_settings.PoolsPrefix}POOL/backends/NAME with NAME using {BackendRules.NameRule}");
                continue;
            }
            if (configuration.FindPool(pool) is { } configured && configured.Backends.Any(b => b.Name == name))
            {
                problems.Add($"etcd key {key}: pool {pool} has a configured backend \"{name}\", which stays as configured");
                continue;
            }
            if (!pools.TryGetValue(pool, out var handle))
            {
                problems.Add($"etcd key {key}: no pool \"{pool}\" (pools: {string.Join(", ", pools.Keys.Order(StringComparer.Ordinal))})");
                continue;
            }
            if (Parse(value, handle.Snapshot.Settings.DefaultWeight, out var address, out var weight) is { } problem)
            {
                problems.Add($"etcd key {key}: {problem}");
                continue;
            }
            (registered.TryGetValue(pool, out var list) ? list : registered[pool] = new List<BackendSettings>()).Add(new BackendSettings(name, address!, weight));
        }
        foreach (var problem in problems.Where(p => _refused.Add(p)))
        {
            _log.Error("{0}; the key is left out, the rest applies", problem);
            Context.System.EventStream.Publish(new ConfigurationRefused("etcd", [problem]));
        }
        _refused.IntersectWith(problems);
        foreach (var pool in pools.Keys)
        {
            var backends = registered.TryGetValue(pool, out var list) ? [.. list] : ImmutableArray<BackendSettings>.Empty;
            if (_sent.TryGetValue(pool, out var sent) && sent.SequenceEqual(backends))
            {
                continue;
            }
            _sent[pool] = backends;
            _pools.Tell(new Balancer.BalancerGuardian.ChildrenSupervisor.ForwardTo(pool, new Routing.PoolRouter.SetRegistered(backends)));
        }
    }

    /// <summary>"HOST:PORT" or "HOST:PORT WEIGHT"; the problem, or null.</summary>
    private static string? Parse(string value, int defaultWeight, out EndpointAddress? address, out int weight)
    {
        var parts = value.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        weight = defaultWeight;
        address = null;
        if (parts.Length is 0 or > 2)
        {
            return $"expected \"HOST:PORT\" or \"HOST:PORT WEIGHT\", got \"{value}\"";
        }
        if (!EndpointAddress.TryParse(parts[0], out var parsed, out var error))
        {
            return $"address: {error}";
        }
        if (parts.Length == 2 && (!int.TryParse(parts[1], out weight) || !BackendRules.IsValidWeight(weight)))
        {
            return $"weight must be {BackendRules.WeightRange}, got \"{parts[1]}\"";
        }
        address = parsed;
        return null;
    }

    /// <summary>Lists the prefix, then watches it from there; again from a new listing after any failure.</summary>
    private async Task FollowAsync(IActorRef self, CancellationToken stop)
    {
        using var etcd = EtcdConnection.For(_settings);
        var prefix = _settings.Prefix + "/";
        var key = ByteString.CopyFromUtf8(prefix);
        var rangeEnd = EtcdConnection.RangeEnd(prefix);
        while (!stop.IsCancellationRequested)
        {
            var listed = false;
            try
            {
                var listing = await etcd.KV.RangeAsync(new RangeRequest { Key = key, RangeEnd = rangeEnd }, await etcd.OptionsAsync(stop));
                var revision = listing.Header.Revision;
                listed = true;
                self.Tell(new Listed(revision, [.. listing.Kvs.Select(kv => (kv.Key.ToStringUtf8(), kv.Value.ToStringUtf8(), kv.ModRevision))], Endpoint: etcd.Endpoint.ToString()));
                using var watch = etcd.Watch.Watch(await etcd.OptionsAsync(stop, stream: true));
                await watch.RequestStream.WriteAsync(new WatchRequest
                {
                    CreateRequest = new WatchCreateRequest { Key = key, RangeEnd = rangeEnd, StartRevision = revision + 1, ProgressNotify = true },
                }, stop);
                while (await watch.ResponseStream.MoveNext(stop))
                {
                    var response = watch.ResponseStream.Current;
                    if (response.Canceled)
                    {
                        // Compacted past where this node was: list again.
                        throw new InvalidOperationException($"watch canceled by etcd ({response.CancelReason})");
                    }
                    if (response.Events.Count > 0)
                    {
                        self.Tell(new Changed(response.Header.Revision, [.. response.Events.Select(e => (
                            e.Kv.Key.ToStringUtf8(),
                            e.Type == Mvccpb.Event.Types.EventType.Delete ? null : e.Kv.Value.ToStringUtf8(),
                            e.Kv.ModRevision))]));
                    }
                }
                throw new InvalidOperationException("etcd closed the watch");
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // A watch that ends (a compaction, a leader change, an expired token) is listed
                // again at once; etcd counts as unreachable only when that listing fails too.
                etcd.Failed();
                if (listed)
                {
                    continue;
                }
                self.Tell(new Unreachable(etcd.Endpoint.ToString(), Describe(e)));
                try
                {
                    await Task.Delay(RetryDelay, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private static string Describe(Exception e) => e switch
    {
        Grpc.Core.RpcException rpc => rpc.StatusCode == Grpc.Core.StatusCode.DeadlineExceeded ? "no answer within 3 s" : rpc.Status.Detail.Length > 0 ? rpc.Status.Detail : rpc.StatusCode.ToString(),
        _ => e.GetBaseException().Message,
    };

    private sealed record Listed(long Revision, ImmutableArray<(string Key, string Value, long Revision)> Keys, bool FromCache = false, string Endpoint = "");

    private sealed record Changed(long Revision, ImmutableArray<(string Key, string? Value, long Revision)> Keys);

    private sealed record Unreachable(string Endpoint, string Reason);
}

/// <summary>Whether this node reaches etcd (for /readyz, the status page and ctl).</summary>
public sealed class EtcdStatus
{
    private Snapshot _current = new(true, DateTimeOffset.UtcNow, "", "", 0);

    /// <summary>The state at one moment.</summary>
    /// <param name="Reachable">False while no endpoint answers.</param>
    /// <param name="Since">Since when it is so.</param>
    /// <param name="Endpoint">The endpoint tried last.</param>
    /// <param name="Reason">Why it cannot be reached.</param>
    /// <param name="Revision">The etcd revision this node has caught up with.</param>
    public sealed record Snapshot(bool Reachable, DateTimeOffset Since, string Endpoint, string Reason, long Revision);

    /// <summary>The state now.</summary>
    public Snapshot Current => Volatile.Read(ref _current);

    internal void Publish(Snapshot snapshot) => Volatile.Write(ref _current, snapshot);
}
