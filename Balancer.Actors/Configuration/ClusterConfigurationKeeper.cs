using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Balancer.Replication;

namespace Balancer.Configuration;

/// <summary>
/// Follows the cluster's configuration on one node: applies each newer published version over the
/// node's own files (a version that does not fit this node is refused here, and the node keeps
/// what it runs), tells the others what this node runs, and marks the members that run other pools
/// than most do (drift), saying so in an event once it has lasted <see cref="DriftGrace"/>.
/// </summary>
internal sealed class ClusterConfigurationKeeper : ReceiveActor, IWithTimers
{
    /// <summary>How long a member may differ before it is reported: a new version takes a moment to reach everyone.</summary>
    internal static readonly TimeSpan DriftGrace = TimeSpan.FromSeconds(5);

    private readonly BalancerExtension _balancer;
    private readonly ConfigurationStatus _status;
    private readonly IActorRef _replicator = BalancerReplicator.Get(Context.System).Replicator;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _role;
    private readonly IWriteConsistency _write;
    private readonly Dictionary<string, DateTimeOffset> _driftSince = new();
    private readonly HashSet<string> _reported = new();
    private ClusterConfiguration? _published;
    private ImmutableDictionary<string, RunningConfiguration> _running = ImmutableDictionary<string, RunningConfiguration>.Empty;
    private ClusterConfiguration? _applied;
    private long _tried;

    public ClusterConfigurationKeeper(BalancerExtension balancer, string role, TimeSpan writeTimeout)
    {
        _balancer = balancer;
        _status = balancer.ConfigurationStatus;
        _role = role;
        _write = new WriteMajority(writeTimeout);
        // A later incarnation carries on with the version the data plane runs.
        _applied = balancer.DataPlane.AppliedClusterConfiguration;
        _tried = AppliedVersion;

        Receive<Changed>(changed =>
        {
            if (changed.Key.Equals(ReplicatedKeys.ClusterConfiguration))
            {
                OnClusterConfiguration(changed.Get(ReplicatedKeys.ClusterConfiguration).Value);
            }
            else if (changed.Key.Equals(ReplicatedKeys.RunningConfigurations))
            {
                _running = changed.Get(ReplicatedKeys.RunningConfigurations).Entries.ToImmutableDictionary();
                Judge();
            }
        });
        Receive<VersionApplied>(applied =>
        {
            _applied = applied.Configuration;
            _balancer.DataPlane.AppliedClusterConfiguration = applied.Configuration;
            TellRunning();
        });
        Receive<NotApplied>(_ => TellRunning());
        // A reload from the node's files changes what it runs, whatever the version.
        Receive<ConfigurationApplied>(_ => TellRunning());
        Receive<Publish>(publish =>
        {
            var current = _published;
            var version = Math.Max(current?.Version ?? 0, AppliedVersion) + 1;
            var history = current is null
                ? ImmutableArray<ClusterConfigurationVersion>.Empty
                : [.. current.History.Prepend(current.AsVersion()).Take(ClusterConfiguration.HistoryLength)];
            var next = new ClusterConfiguration(version, publish.Text, _cluster.SelfAddress.ToString(), DateTimeOffset.UtcNow, publish.Fingerprint, [.. publish.Changes], history);
            _replicator.Tell(Dsl.Update(ReplicatedKeys.ClusterConfiguration, new LWWRegister<ClusterConfiguration>(_cluster.SelfUniqueAddress, next, ByVersion), _write,
                new PendingPublish(Sender, version), register => register.WithValue(_cluster.SelfUniqueAddress, next, ByVersion)));
        });
        Receive<UpdateSuccess>(success =>
        {
            if (success.Request is PendingPublish pending)
            {
                pending.ReplyTo.Tell(new Published(pending.Version));
            }
        });
        Receive<UpdateTimeout>(timeout =>
        {
            if (timeout.Request is PendingPublish pending)
            {
                // Written here and spreading: it is applied wherever it arrives.
                pending.ReplyTo.Tell(new Published(pending.Version));
                _log.Warning("cluster configuration version {0}: published here, not yet confirmed by a majority; it spreads as nodes are reachable", pending.Version);
            }
        });
        Receive<IUpdateFailure>(failure =>
        {
            if (failure.Request is PendingPublish pending)
            {
                pending.ReplyTo.Tell(new Status.Failure(new InvalidOperationException($"cluster configuration version {pending.Version} could not be stored: {failure}")));
            }
        });
        // etcd's PREFIX/config: the cluster's configuration, read by every node itself.
        Receive<FromSource>(source => OnClusterConfiguration(source.Configuration));
        Receive<ClusterEvent.IMemberEvent>(_ => Judge());
        Receive<JudgeNow>(_ => Judge());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerExtension balancer, string role, TimeSpan writeTimeout) =>
        Akka.Actor.Props.Create(() => new ClusterConfigurationKeeper(balancer, role, writeTimeout));

    /// <summary>Newest version wins, whatever the clocks say.</summary>
    private static long ByVersion(long _, ClusterConfiguration value) => value.Version;

    protected override void PreStart()
    {
        _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.ClusterConfiguration, Self));
        _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.RunningConfigurations, Self));
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
        Context.System.EventStream.Subscribe(Self, typeof(ConfigurationApplied));
        Timers.StartPeriodicTimer("judge", JudgeNow.Instance, TimeSpan.FromSeconds(1));
        // The others learn at once what this node starts with.
        TellRunning();
    }

    protected override void PostStop()
    {
        _cluster.Unsubscribe(Self);
        Context.System.EventStream.Unsubscribe(Self);
    }

    private void OnClusterConfiguration(ClusterConfiguration cluster)
    {
        _published = cluster;
        ShowStatus();
        if (cluster.Version == AppliedVersion || cluster.Version <= _tried)
        {
            return;
        }
        _tried = cluster.Version;
        _log.Info("cluster configuration version {0} (published through {1} at {2:u}): applying it over this node's files", cluster.Version, cluster.PublishedBy, cluster.PublishedAt);
        var self = Self;
        _balancer.ApplyClusterAsync(cluster).ContinueWith(
            t => t.IsCompletedSuccessfully ? (object)new VersionApplied(cluster) : NotApplied.Instance,
            TaskScheduler.Default).PipeTo(self);
    }

    private void TellRunning()
    {
        var running = new RunningConfiguration(AppliedVersion, SettingsComparer.Fingerprint(_balancer.Settings.Pools), DateTimeOffset.UtcNow);
        var self = _cluster.SelfAddress.ToString();
        _running = _running.SetItem(self, running);
        _replicator.Tell(Dsl.Update(ReplicatedKeys.RunningConfigurations, LWWDictionary<string, RunningConfiguration>.Empty, WriteLocal.Instance,
            map => map.SetItem(_cluster.SelfUniqueAddress, self, running)));
        Judge();
    }

    /// <summary>Recomputes drift among the members up now, and reports what has lasted the grace.</summary>
    private void Judge()
    {
        var members = _cluster.State.Members
            .Where(m => m.Status == MemberStatus.Up && (_role.Length == 0 || m.HasRole(_role)))
            .Select(m => m.Address.ToString())
            .ToList();
        var drifting = ConfigurationStatus.Drift(_running, members);
        ShowStatus(drifting);
        var now = DateTimeOffset.UtcNow;
        foreach (var member in drifting)
        {
            var since = _driftSince.TryGetValue(member, out var found) ? found : _driftSince[member] = now;
            if (now - since >= DriftGrace && _reported.Add(member))
            {
                var running = _running[member];
                _log.Warning("configuration drift: {0} runs pools {1} (cluster configuration version {2}) while most members run other pools", member, running.Fingerprint, running.Version);
                Context.System.EventStream.Publish(new ConfigurationDriftChanged(member, true, running.Fingerprint, running.Version));
            }
        }
        foreach (var member in _driftSince.Keys.Where(m => !drifting.Contains(m)).ToList())
        {
            _driftSince.Remove(member);
            if (_reported.Remove(member))
            {
                var running = _running.TryGetValue(member, out var r) ? r : null;
                _log.Info("configuration drift over: {0} runs the same pools as the others again", member);
                Context.System.EventStream.Publish(new ConfigurationDriftChanged(member, false, running?.Fingerprint ?? "", running?.Version ?? 0));
            }
        }
    }

    private void ShowStatus(ImmutableHashSet<string>? drifting = null) =>
        _status.Publish(new ConfigurationStatus.Snapshot(_published, _running, drifting ?? _status.Current.Drifting, _applied));

    /// <summary>Publish <paramref name="Text"/> as the next version; answered with <see cref="Published"/>.</summary>
    public sealed record Publish(string Text, string Fingerprint, IReadOnlyList<string> Changes);

    /// <summary>The cluster's configuration as a configuration source (etcd) has it.</summary>
    public sealed record FromSource(ClusterConfiguration Configuration);

    /// <summary>The version <see cref="Publish"/> made.</summary>
    public sealed record Published(long Version);

    private sealed record PendingPublish(IActorRef ReplyTo, long Version);

    private sealed record VersionApplied(ClusterConfiguration Configuration);

    private long AppliedVersion => _applied?.Version ?? 0;

    private sealed class NotApplied
    {
        public static readonly NotApplied Instance = new();
        private NotApplied() { }
    }

    private sealed class JudgeNow
    {
        public static readonly JudgeNow Instance = new();
        private JudgeNow() { }
    }
}
