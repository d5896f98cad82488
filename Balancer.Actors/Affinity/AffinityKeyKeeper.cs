using System.Security.Cryptography;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;

namespace Balancer.Affinity;

/// <summary>
/// The affinity key when <c>balancer.node.affinity-key</c> is empty: read from a majority at start,
/// generated (32 random bytes) by the oldest member running Balancer when it finds none, replicated
/// in the register <c>balancer-affinity-key</c>, and set in the node's <see cref="AffinityKey"/> that
/// every pool's cookies and session hashes use. The other members wait for it, so the members of a
/// new cluster, starting together, do not each pin sessions under a key of their own; a member
/// Up for <see cref="OldestWait"/> still without one (the oldest does not run these pools)
/// generates it. Until a key is known, sessions are balanced without being pinned. Two keys generated at once converge on one (last writer wins); sessions made under the other
/// are then balanced afresh.
/// </summary>
internal sealed class AffinityKeyKeeper : ReceiveActor, IWithTimers
{
    /// <summary>How long a member that is not the oldest waits, once Up, for the oldest's key before generating one.</summary>
    internal static readonly TimeSpan OldestWait = TimeSpan.FromSeconds(5);

    private DateTimeOffset? _upSince;
    private readonly string _role;
    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly UniqueAddress _self = Cluster.Get(Context.System).SelfUniqueAddress;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AffinityKey _key;
    private readonly TimeSpan _readTimeout;
    private readonly TimeSpan _writeTimeout;
    private string? _current;

    public AffinityKeyKeeper(AffinityKey key, TimeSpan readTimeout, TimeSpan writeTimeout, string role)
    {
        _key = key;
        _role = role;
        _readTimeout = readTimeout;
        _writeTimeout = writeTimeout;
        Receive<GetSuccess>(success => Use(success.Get(Replication.ReplicatedKeys.AffinityKey).Value));
        Receive<Changed>(changed => Use(changed.Get(Replication.ReplicatedKeys.AffinityKey).Value));
        Receive<NotFound>(_ =>
        {
            if (MayGenerate())
            {
                Generate();
            }
            else if (_current is null)
            {
                // The oldest member's key arrives through the subscription; ask again meanwhile.
                Timers.StartSingleTimer("read", ReadAgain.Instance, TimeSpan.FromMilliseconds(500));
            }
        });
        Receive<ReadAgain>(_ =>
        {
            if (_current is null)
            {
                _replicator.Tell(Dsl.Get(Replication.ReplicatedKeys.AffinityKey, new ReadMajority(_readTimeout)));
            }
        });
        // A majority could not be read: generate only if nothing is known locally either.
        Receive<GetFailure>(_ => _replicator.Tell(Dsl.Get(Replication.ReplicatedKeys.AffinityKey, ReadLocal.Instance)));
        Receive<UpdateSuccess>(_ => { });
        Receive<UpdateTimeout>(_ => _log.Warning("affinity key: generated here, not yet confirmed by a majority; it spreads by gossip"));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(AffinityKey key, TimeSpan readTimeout, TimeSpan writeTimeout, string role) =>
        Akka.Actor.Props.Create(() => new AffinityKeyKeeper(key, readTimeout, writeTimeout, role));

    /// <summary>
    /// True once this node is Up and either the oldest Up member with Balancer's role, or Up for
    /// <see cref="OldestWait"/> without the oldest's key arriving.
    /// </summary>
    private bool MayGenerate()
    {
        var cluster = Cluster.Get(Context.System);
        if (cluster.SelfMember.Status != MemberStatus.Up)
        {
            return false;
        }
        _upSince ??= DateTimeOffset.UtcNow;
        var oldest = cluster.State.Members
            .Where(m => m.Status == MemberStatus.Up && (_role.Length == 0 || m.HasRole(_role)))
            .OrderBy(m => m, Member.AgeOrdering)
            .FirstOrDefault();
        return oldest is null || oldest.UniqueAddress.Equals(cluster.SelfUniqueAddress) || DateTimeOffset.UtcNow - _upSince >= OldestWait;
    }

    private sealed class ReadAgain
    {
        public static readonly ReadAgain Instance = new();
        private ReadAgain() { }
    }

    protected override void PreStart()
    {
        if (_key.Value is { } known)
        {
            _current = System.Text.Encoding.UTF8.GetString(known);
        }
        _replicator.Tell(Dsl.Subscribe(Replication.ReplicatedKeys.AffinityKey, Self));
        _replicator.Tell(Dsl.Get(Replication.ReplicatedKeys.AffinityKey, new ReadMajority(_readTimeout)));
    }

    private void Generate()
    {
        // A node rejoining as a new incarnation knows the key its sessions were hashed with; a
        // cluster that lost it (every member restarted meanwhile) takes it back from this node.
        var generated = _current ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        _replicator.Tell(Dsl.Update(Replication.ReplicatedKeys.AffinityKey, new LWWRegister<string>(_self, generated), new WriteMajority(_writeTimeout),
            register => string.IsNullOrEmpty(register.Value) ? register.WithValue(_self, generated) : register));
        if (_current is null)
        {
            Use(generated);
            _log.Info("affinity key: none configured or replicated yet; generated one and replicated it");
        }
        else
        {
            _log.Info("affinity key: none replicated; replicated the one this node already used");
        }
    }

    private void Use(string? key)
    {
        if (string.IsNullOrEmpty(key) || key == _current)
        {
            return;
        }
        _current = key;
        _key.Set(key);
    }
}
