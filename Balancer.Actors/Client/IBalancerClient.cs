using Balancer.Management;
using Balancer.Model;
using Balancer.Routing;

namespace Balancer.Client;

/// <summary>
/// Client-side load balancing inside an ActorSystem that embeds Balancer: pick a live (and, with a
/// key, sticky) backend of a pool for an outgoing call, with the cluster's shared health and
/// affinity, and no proxy hop. Reads the pool's published snapshot: no actor message, no lock.
/// <code>
/// var lease = BalancerExtension.Get(system).Client.Select("app");
/// try { ... call lease.Backend.EndPoint ...; lease.Complete(BackendOutcome.Success); }
/// catch (SocketException) { lease.Complete(BackendOutcome.ConnectFailed); }
/// </code>
/// </summary>
public interface IBalancerClient
{
    /// <summary>The pools this node knows.</summary>
    IReadOnlyCollection<string> Pools { get; }

    /// <summary>
    /// A backend of <paramref name="pool"/> for one call. With <paramref name="affinityKey"/> the
    /// same key gets the same backend from every node (through the pool's replicated affinity table
    /// when it has one, else by rendezvous hashing). The lease has no backend when none is available.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No such pool.</exception>
    BackendLease Select(string pool, string? affinityKey = null);

    /// <summary>
    /// The attempts of one call to <paramref name="pool"/>, for a caller that retries a backend
    /// refusing its connection on another: <see cref="BackendSelection.Next"/> gives each attempt's
    /// lease, the session's backend first, never one already tried, within the pool's <c>retries</c>.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No such pool.</exception>
    BackendSelection Selection(string pool, string? affinityKey = null);

    /// <summary>The pool's current state, read-only: backends with health, admin state, weights and counters.</summary>
    /// <exception cref="KeyNotFoundException">No such pool.</exception>
    PoolSnapshot View(string pool);

    /// <summary>
    /// Backend, pool, duty and membership changes until <paramref name="cancellationToken"/> is
    /// cancelled, starting with the current state as events (as Akka.Cluster's initial state as
    /// events): a <c>member-up</c> per Up member, then a <c>backend-up</c> or <c>backend-down</c> per
    /// backend, each text ending in "(current state)", so that a subscriber never has to ask first.
    /// </summary>
    IAsyncEnumerable<NotableEvent> Events(CancellationToken cancellationToken = default);
}
