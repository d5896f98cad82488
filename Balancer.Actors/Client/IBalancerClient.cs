using Balancer.Management;
using Balancer.Model;

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

    /// <summary>Like <see cref="Select(string, string?)"/>, skipping backends this call already tried.</summary>
    BackendLease Select(string pool, string? affinityKey, ref AttemptedBackends attempted);

    /// <summary>The pool's current state, read-only: backends with health, admin state, weights and counters.</summary>
    /// <exception cref="KeyNotFoundException">No such pool.</exception>
    PoolSnapshot View(string pool);

    /// <summary>Backend, pool, role and membership changes from now on, until <paramref name="cancellationToken"/> is cancelled.</summary>
    IAsyncEnumerable<NotableEvent> Events(CancellationToken cancellationToken = default);
}

/// <summary>How a call to a leased backend went; feeds passive health and least-connections.</summary>
public enum BackendOutcome
{
    /// <summary>The backend answered (any status the caller considers an answer).</summary>
    Success,
    /// <summary>The backend answered with a failure that counts against it (a 5xx, a reset).</summary>
    Failed,
    /// <summary>No connection could be opened: the backend may be down; try another.</summary>
    ConnectFailed,
    /// <summary>The caller gave up for its own reasons; nothing is held against the backend.</summary>
    Abandoned,
}

/// <summary>
/// One call's use of a backend: the address to call, and <see cref="Complete"/> to report how it
/// went. A struct, so selecting allocates nothing; complete it exactly once.
/// </summary>
public readonly struct BackendLease
{
    private readonly long _started;

    internal BackendLease(Backend? backend)
    {
        Backend = backend;
        _started = backend is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
    }

    /// <summary>The backend, or null when the pool has none available.</summary>
    public Backend? Backend { get; }

    /// <summary>True when a backend was leased.</summary>
    public bool HasBackend => Backend is not null;

    /// <summary>Reports the call's outcome (and, for an answer, its status code) into the backend's counters.</summary>
    public void Complete(BackendOutcome outcome, int statusCode = 0)
    {
        var counters = Backend?.Counters;
        if (counters is null)
        {
            return;
        }
        switch (outcome)
        {
            case BackendOutcome.Success:
                counters.ObserveResponse(statusCode == 0 ? 200 : statusCode, System.Diagnostics.Stopwatch.GetTimestamp() - _started);
                counters.Finish(success: true);
                break;
            case BackendOutcome.Failed:
                if (statusCode != 0)
                {
                    counters.ObserveResponse(statusCode, System.Diagnostics.Stopwatch.GetTimestamp() - _started);
                }
                counters.Finish(success: false);
                break;
            case BackendOutcome.ConnectFailed:
                counters.ConnectFailed();
                break;
            default:
                counters.End();
                break;
        }
    }
}
