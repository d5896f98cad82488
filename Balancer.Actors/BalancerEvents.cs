using Balancer.Configuration;
using Balancer.Health;
using Balancer.Membership;
using Balancer.Model;

namespace Balancer;

// The events Balancer publishes on the ActorSystem's EventStream, for embedders to subscribe to
// (and for the event feed behind `ctl cluster tail`, the status page and the alert webhooks).

/// <summary>Published on the EventStream when a backend's combined health changes.</summary>
public sealed record BackendHealthChanged(string Pool, string Backend, BackendHealth Old, BackendHealth New, string Reason);

/// <summary>Published on the EventStream when an operator changes a backend's admin state or weight.</summary>
public sealed record BackendAdminStateChanged(string Pool, string Backend, BackendAdminState Old, BackendAdminState New, int Weight);

/// <summary>Published on the EventStream when a pool's effective configuration changes (backends added or removed).</summary>
public sealed record PoolConfigChanged(string Pool, long Version, PoolSettings Settings);

/// <summary>Published on the EventStream when a pool enters or leaves panic mode (too few healthy backends).</summary>
public sealed record PoolPanicChanged(string Pool, bool Panic, int Healthy, int Total);

/// <summary>Published on the EventStream when this node becomes active or passive.</summary>
public sealed record NodeDutyChanged(string Node, NodeDuty Duty, string ActiveNode);

/// <summary>
/// This node's durable store could not be read at start (a torn or corrupt file): it was moved to
/// <paramref name="MovedTo"/> and the node started with an empty one, which its peers fill in.
/// </summary>
public sealed record DurableStoreRebuilt(string Directory, string MovedTo, string Reason);

/// <summary>
/// This node's durable store could not write a change (<paramref name="Failing"/>: a full disk, an
/// I/O error), or writes succeed again and every change is stored (not <paramref name="Failing"/>).
/// While failing, the node serves and replicates and <c>/readyz</c> answers 503; an admin change that
/// a majority of nodes could not store is reported to its caller as not stored.
/// </summary>
public sealed record DurableStoreFailing(string Directory, string Reason, bool Failing);

/// <summary>Published on the EventStream when this node applied a new configuration (a reload, or the cluster's configuration).</summary>
/// <param name="Source">What brought it: <c>SIGHUP</c>, <c>file change</c>, <c>ctl config reload</c>, <c>cluster version N</c>.</param>
/// <param name="Change">What it changed.</param>
public sealed record ConfigurationApplied(string Source, ConfigurationChange Change);

/// <summary>Published on the EventStream when a new configuration was refused; the running one stays.</summary>
/// <param name="Source">What brought it.</param>
/// <param name="Problems">One line per problem.</param>
public sealed record ConfigurationRefused(string Source, IReadOnlyList<string> Problems);

/// <summary>
/// Published on the EventStream when a member has run other pools than most members for a while
/// (<paramref name="Drifting"/>), and when it runs the same again.
/// </summary>
/// <param name="Member">The member's address.</param>
/// <param name="Drifting">True when the drift began, false when it ended.</param>
/// <param name="Fingerprint">The fingerprint of the pools it runs.</param>
/// <param name="Version">The cluster configuration version it applied (0: its files alone).</param>
public sealed record ConfigurationDriftChanged(string Member, bool Drifting, string Fingerprint, long Version);

/// <summary>Published on the EventStream when a configuration source (etcd) stops or starts answering this node.</summary>
/// <param name="Source">etcd.</param>
/// <param name="Reachable">True when it answers again.</param>
/// <param name="Endpoint">The endpoint tried.</param>
/// <param name="Reason">Why it cannot be reached (empty when reachable).</param>
public sealed record ConfigSourceReachability(string Source, bool Reachable, string Endpoint, string Reason);
