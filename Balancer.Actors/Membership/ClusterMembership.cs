using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Balancer.Configuration;

namespace Balancer.Membership;

/// <summary>One member of the balancer cluster as an operator sees it.</summary>
/// <param name="Address">The member's remoting address.</param>
/// <param name="Roles">Its Akka.Cluster roles.</param>
/// <param name="Status">joining, up, leaving, exiting, down, removed or weakly-up.</param>
/// <param name="Reachable">False when some member cannot reach it.</param>
/// <param name="Duty">Whether it serves (active) or stands by (passive).</param>
/// <param name="Config">What it runs: the cluster configuration version it applied (0: its files alone) and the fingerprint of its pools; null until it has said.</param>
/// <param name="ConfigDrift">True when it runs other pools than most members.</param>
public sealed record MemberFacts(string Address, ImmutableArray<string> Roles, string Status, bool Reachable, NodeDuty Duty, RunningConfiguration? Config = null, bool ConfigDrift = false);

/// <summary>The cluster as one node sees it now: members, leader, unreachable members, the active node.</summary>
public sealed record ClusterFacts(
    string Self,
    string? Leader,
    NodeMode Mode,
    string? ActiveNode,
    ImmutableArray<MemberFacts> Members,
    ImmutableArray<string> Unreachable);

/// <summary>Reads <see cref="ClusterFacts"/> from this node's view of the cluster (for the admin API and ctl).</summary>
public sealed class ClusterMembership
{
    private readonly ActorSystem _system;
    private readonly NodeMode _mode;

    private readonly string _role;

    private readonly ConfigurationStatus? _configuration;

    internal ClusterMembership(ActorSystem system, NodeMode mode, string role, ConfigurationStatus? configuration = null)
    {
        _configuration = configuration;
        _role = role;
        _system = system;
        _mode = mode;
    }

    /// <summary>The facts now.</summary>
    public ClusterFacts Current()
    {
        var cluster = Cluster.Get(_system);
        var state = cluster.State;
        var unreachable = state.Unreachable.Select(m => m.Address.ToString()).ToImmutableHashSet();
        var active = _mode == NodeMode.ActivePassive ? DutyCoordinator.ActiveMember(state, _role)?.Address.ToString() : null;
        var configuration = _configuration?.Current;
        var members = state.Members
            .OrderBy(m => m.Address.ToString(), StringComparer.Ordinal)
            .Select(m => new MemberFacts(
                m.Address.ToString(),
                m.Roles.Order(StringComparer.Ordinal).ToImmutableArray(),
                StatusName(m.Status),
                !unreachable.Contains(m.Address.ToString()),
                _mode == NodeMode.ActiveActive || m.Address.ToString() == active ? NodeDuty.Active : NodeDuty.Passive,
                configuration?.Running.GetValueOrDefault(m.Address.ToString()),
                configuration?.Drifting.Contains(m.Address.ToString()) == true))
            .ToImmutableArray();
        return new ClusterFacts(cluster.SelfAddress.ToString(), state.Leader?.ToString(), _mode, active, members, unreachable.Order(StringComparer.Ordinal).ToImmutableArray());
    }

    private static string StatusName(MemberStatus status) => status switch
    {
        MemberStatus.WeaklyUp => "weakly-up",
        _ => status.ToString().ToLowerInvariant(),
    };
}
