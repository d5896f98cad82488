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
    private readonly IWriteConsistency _everyMember;
    private readonly Dictionary<string, DateTimeOffset> _driftSince = new();
    private readonly HashSet<string> _reported = new();
    private ClusterConfiguration? _published;
    private ImmutableDictionary<string, RunningConfiguration> _running = ImmutableDictionary<string, RunningConfiguration>.Empty;
    // What this node last told the others it runs.
    private RunningConfiguration? _told;
    private long _tried;
    private bool _applying;
    // With etcd as the source, its key is the cluster's configuration and the replicated one is not followed.
    private readonly bool _followReplicated;

    public ClusterConfigurationKeeper(BalancerExtension balancer, string role, TimeSpan writeTimeout, bool followReplicated = true)
    {
        _balancer = balancer;
        _status = balancer.ConfigurationStatus;
        _role = role;
        _write = new WriteMajority(writeTimeout);
        _everyMember = new WriteAll(writeTimeout);
        _followReplicated = followReplicated;
        // A later incarnation carries on with the version the data plane runs.
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
                // The leader removes what a member that left ran. When that member comes back at
                // the same address, the removal can arrive after its new incarnation's entry and
                // take that away too: a member whose own entry is missing or stale says it again.
                if (_told is { } told && !(_running.TryGetValue(_cluster.SelfAddress.ToString(), out var replicated)
                    && replicated.Version == told.Version && replicated.Fingerprint == told.Fingerprint))
                {
                    Announce(told);
                }
                Judge();
            }
        });
        Receive<VersionApplied>(_ =>
        {
            _applying = false;
            TellRunning();
        });
        Receive<NotApplied>(_ =>
        {
            _applying = false;
            TellRunning();
        });
        // A reload from the node's files changes what it runs, whatever the version; and a
        // version refused before (the files did not fit it) is tried again with the mended files.
        Receive<ConfigurationApplied>(_ =>
        {
            TellRunning();
            if (!_applying && _published is { } published && published.Version != AppliedVersion)
            {
                _tried = 0;
                OnClusterConfiguration(published);
            }
        });
        Receive<Publish>(publish =>
        {
            // The version is one past what the replica holds when the write is made, so two
            // publishes through this node never share one.
            var made = new MadeVersion();
            var self = _cluster.SelfUniqueAddress;
            var by = _cluster.SelfAddress.ToString();
            var empty = new LWWRegister<ClusterConfiguration>(self, new ClusterConfiguration(0, "", "", DateTimeOffset.MinValue, "", [], []), ByVersion);
            _replicator.Tell(Dsl.Update(ReplicatedKeys.ClusterConfiguration, empty, _write, new PendingPublish(Sender, made), register =>
            {
                var current = register.Value;
                var history = current.Version == 0
                    ? ImmutableArray<ClusterConfigurationVersion>.Empty
                    : [.. current.History.Prepend(current.AsVersion()).Take(ClusterConfiguration.HistoryLength)];
                made.Version = Math.Max(current.Version, AppliedVersion) + 1;
                return register.WithValue(self, new ClusterConfiguration(made.Version, publish.Text, by, DateTimeOffset.UtcNow, publish.Fingerprint,
                    [.. publish.Changes.Take(ClusterConfiguration.ChangesKept)], history), ByVersion);
            }));
            // The majority write leaves the other members to gossip (a round a second, a random
            // peer each): the same value written to every member at once reaches them all within
            // the moment. Its answer confirms nothing more and is not waited for.
            _replicator.Tell(Dsl.Update(ReplicatedKeys.ClusterConfiguration, empty, _everyMember, register => register));
        });
        Receive<UpdateSuccess>(success =>
        {
            if (success.Request is PendingPublish pending)
            {
                pending.ReplyTo.Tell(new Published(pending.Made.Version, Confirmed: true));
            }
        });
        Receive<UpdateTimeout>(timeout =>
        {
            if (timeout.Request is PendingPublish pending)
            {
                // Written here and spreading: it is applied wherever it arrives.
                pending.ReplyTo.Tell(new Published(pending.Made.Version, Confirmed: false));
                _log.Warning("cluster configuration version {0}: published here, not yet confirmed by a majority; it spreads as nodes are reachable", pending.Made.Version);
            }
        });
        Receive<IUpdateFailure>(failure =>
        {
            if (failure.Request is PendingPublish pending)
            {
                pending.ReplyTo.Tell(new Status.Failure(new InvalidOperationException($"the cluster configuration could not be stored: {failure}")));
            }
        });
        // etcd's PREFIX/config: the cluster's configuration, read by every node itself.
        Receive<FromSource>(source => OnClusterConfiguration(source.Configuration));
        Receive<ClusterEvent.MemberRemoved>(removed =>
        {
            // What a member that left ran is no one's business any more (the leader tidies up).
            var address = removed.Member.Address.ToString();
            if (_running.ContainsKey(address) && IsLeader)
            {
                _replicator.Tell(Dsl.Update(ReplicatedKeys.RunningConfigurations, LWWDictionary<string, RunningConfiguration>.Empty, WriteLocal.Instance,
                    map => map.Remove(_cluster.SelfUniqueAddress, address)));
            }
            Judge();
        });
        Receive<ClusterEvent.IMemberEvent>(_ => Judge());
        Receive<JudgeNow>(_ => Judge());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(BalancerExtension balancer, string role, TimeSpan writeTimeout, bool followReplicated = true) =>
        Akka.Actor.Props.Create(() => new ClusterConfigurationKeeper(balancer, role, writeTimeout, followReplicated));

    /// <summary>Newest version wins, whatever the clocks say.</summary>
    private static long ByVersion(long _, ClusterConfiguration value) => value.Version;

    protected override void PreStart()
    {
        if (_followReplicated)
        {
            _replicator.Tell(Dsl.Subscribe(ReplicatedKeys.ClusterConfiguration, Self));
        }
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
        if (cluster.Version == 0 || cluster.Version == AppliedVersion || cluster.Version <= _tried || _applying)
        {
            return;
        }
        _tried = cluster.Version;
        _applying = true;
        _log.Info("cluster configuration version {0} (published through {1} at {2:u}): applying it over this node's files", cluster.Version, cluster.PublishedBy, cluster.PublishedAt);
        var self = Self;
        _balancer.ApplyClusterAsync(cluster).ContinueWith(
            t => t.IsCompletedSuccessfully ? (object)new VersionApplied(cluster.Version) : NotApplied.Instance,
            TaskScheduler.Default).PipeTo(self);
    }

    private void TellRunning() =>
        Announce(new RunningConfiguration(AppliedVersion, SettingsComparer.Fingerprint(_balancer.Settings.Pools), DateTimeOffset.UtcNow));

    private void Announce(RunningConfiguration running)
    {
        _told = running;
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
            // Each node says it in its own log and event feed; the alert goes out once, from the
            // node that sends the cluster's alerts.
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
            // A member that left is not "over" its drift: it is gone.
            if (_reported.Remove(member) && members.Contains(member))
            {
                var running = _running.TryGetValue(member, out var r) ? r : null;
                _log.Info("configuration drift over: {0} runs the same pools as the others again", member);
                Context.System.EventStream.Publish(new ConfigurationDriftChanged(member, false, running?.Fingerprint ?? "", running?.Version ?? 0));
            }
        }
    }

    private bool IsLeader => _cluster.State.Leader is { } leader && leader.Equals(_cluster.SelfAddress);

    private void ShowStatus(ImmutableHashSet<string>? drifting = null) =>
        _status.Publish(new ConfigurationStatus.Snapshot(_published, _running, drifting ?? _status.Current.Drifting, Applied));

    /// <summary>Publish <paramref name="Text"/> as the next version; answered with <see cref="Published"/>.</summary>
    public sealed record Publish(string Text, string Fingerprint, IReadOnlyList<string> Changes);

    /// <summary>The cluster's configuration as a configuration source (etcd) has it.</summary>
    public sealed record FromSource(ClusterConfiguration Configuration);

    /// <summary>The version <see cref="Publish"/> made; <paramref name="Confirmed"/> when a majority holds it.</summary>
    public sealed record Published(long Version, bool Confirmed);

    private sealed record PendingPublish(IActorRef ReplyTo, MadeVersion Made);

    private sealed record VersionApplied(long Version);

    /// <summary>The version the data plane runs (set by the extension as it applies one, under its lock).</summary>
    private ClusterConfiguration? Applied => _balancer.DataPlane.AppliedClusterConfiguration;

    private long AppliedVersion => Applied?.Version ?? 0;

    /// <summary>The version a publish made, known once the replicator ran its update.</summary>
    private sealed class MadeVersion
    {
        public long Version { get; set; }
    }

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
