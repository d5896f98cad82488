using System.Security.Cryptography;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;

namespace Balancer.Affinity;

/// <summary>
/// The cookie key when <c>balancer.node.affinity-key</c> is empty: read from a majority at start,
/// generated (32 random bytes) by the first node that finds none, replicated in the register
/// <c>balancer-affinity-key</c>, and set in the node's <see cref="AffinityKey"/> that every pool's cookies read. Two nodes generating at
/// once converge on one key (last writer wins); cookies signed with the other are then balanced afresh.
/// </summary>
internal sealed class AffinityKeyKeeper : ReceiveActor
{
    private readonly IActorRef _replicator = Replication.BalancerReplicator.Get(Context.System).Replicator;
    private readonly UniqueAddress _self = Cluster.Get(Context.System).SelfUniqueAddress;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AffinityKey _key;
    private readonly TimeSpan _readTimeout;
    private readonly TimeSpan _writeTimeout;
    private string? _current;

    public AffinityKeyKeeper(AffinityKey key, TimeSpan readTimeout, TimeSpan writeTimeout)
    {
        _key = key;
        _readTimeout = readTimeout;
        _writeTimeout = writeTimeout;
        Receive<GetSuccess>(success => Use(success.Get(Replication.ReplicatedKeys.AffinityCookieKey).Value));
        Receive<Changed>(changed => Use(changed.Get(Replication.ReplicatedKeys.AffinityCookieKey).Value));
        Receive<NotFound>(_ => Generate());
        // A majority could not be read: generate only if nothing is known locally either.
        Receive<GetFailure>(_ => _replicator.Tell(Dsl.Get(Replication.ReplicatedKeys.AffinityCookieKey, ReadLocal.Instance)));
        Receive<UpdateSuccess>(_ => { });
        Receive<UpdateTimeout>(_ => _log.Warning("affinity cookie key: generated here, not yet confirmed by a majority; it spreads by gossip"));
    }

    public static Props Props(AffinityKey key, TimeSpan readTimeout, TimeSpan writeTimeout) => Akka.Actor.Props.Create(() => new AffinityKeyKeeper(key, readTimeout, writeTimeout));

    protected override void PreStart()
    {
        _replicator.Tell(Dsl.Subscribe(Replication.ReplicatedKeys.AffinityCookieKey, Self));
        _replicator.Tell(Dsl.Get(Replication.ReplicatedKeys.AffinityCookieKey, new ReadMajority(_readTimeout)));
    }

    private void Generate()
    {
        if (_current is not null)
        {
            return;
        }
        var generated = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        _replicator.Tell(Dsl.Update(Replication.ReplicatedKeys.AffinityCookieKey, new LWWRegister<string>(_self, generated), new WriteMajority(_writeTimeout),
            register => string.IsNullOrEmpty(register.Value) ? register.WithValue(_self, generated) : register));
        Use(generated);
        _log.Info("affinity cookie key: none configured or replicated yet; generated one and replicated it");
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
