using System.Collections.Immutable;
using Balancer.Configuration;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Model;

/// <summary>
/// Everything the data plane needs to route a request of one pool, built by the pool's routing actor
/// and swapped in whole. Reading it takes no lock and sends no message.
/// </summary>
public sealed class PoolSnapshot
{
    /// <summary>Creates a snapshot; <see cref="PoolSnapshotBuilder"/> is the usual way.</summary>
    public PoolSnapshot(long version, PoolSettings settings, ImmutableArray<Backend> backends, ImmutableArray<Backend> routable, bool panic, Algorithm algorithm, Random? slowStartAdmission = null)
    {
        _slowStartAdmission = slowStartAdmission;
        Version = version;
        Settings = settings;
        Backends = backends;
        Routable = routable;
        Panic = panic;
        Algorithm = algorithm;
    }

    // Set for algorithms that ignore weights (round-robin, first): a backend in slow start is then
    // passed over with probability 1 - factor, which ramps its share as a weight would.
    private readonly Random? _slowStartAdmission;

    /// <summary>Increases with every snapshot of the pool.</summary>
    public long Version { get; }

    /// <summary>Name of the pool.</summary>
    public string Name => Settings.Name;

    /// <summary>The pool's configuration.</summary>
    public PoolSettings Settings { get; }

    /// <summary>Every backend in configuration order, whatever its state.</summary>
    public ImmutableArray<Backend> Backends { get; }

    /// <summary>The backends new requests may go to; the algorithm indexes into this.</summary>
    public ImmutableArray<Backend> Routable { get; }

    /// <summary>True when too few backends are healthy and the pool routes to all non-maintenance ones.</summary>
    public bool Panic { get; }

    /// <summary>The algorithm, prepared for <see cref="Routable"/>.</summary>
    public Algorithm Algorithm { get; }

    /// <summary>
    /// The backend an existing session is pinned to, when it may still serve it: healthy and not in
    /// maintenance (a draining backend keeps its sessions). Null sends the session elsewhere.
    /// </summary>
    public Backend? FindForSession(string? name)
    {
        if (name is null)
        {
            return null;
        }
        foreach (var backend in Backends)
        {
            if (backend.Name == name)
            {
                return backend.AdminState != BackendAdminState.Maint && (backend.Healthy || Panic) && backend.Weight > 0 ? backend : null;
            }
        }
        return null;
    }

    /// <summary>
    /// The routable backend that <paramref name="key"/> ranks highest (rendezvous hashing): every
    /// node with the same routable set picks the same one, with no coordination.
    /// </summary>
    public Backend? RendezvousFor(string key)
    {
        Backend? best = null;
        ulong bestScore = 0;
        foreach (var backend in Routable)
        {
            var score = Routing.KeyHash.Of(key + "\n" + backend.Name);
            if (best is null || score > bestScore)
            {
                best = backend;
                bestScore = score;
            }
        }
        return best;
    }

    /// <summary>
    /// Picks the session's <paramref name="pinned"/> backend on the first attempt, balancing
    /// afterwards (and from the start when there is none); a retry never lands on the pinned
    /// backend that just refused.
    /// </summary>
    public Backend? Select(in RoutingRequest request, ref AttemptedBackends attempted, Backend? pinned)
    {
        if (pinned is null || attempted.PinnedTried)
        {
            return Select(in request, ref attempted);
        }
        attempted.PinnedTried = true;
        var index = Routable.IndexOf(pinned);
        if (index >= 0)
        {
            attempted.Add(index);
        }
        return pinned;
    }

    /// <summary>
    /// Picks a backend for a request, skipping the ones already tried; null when none is left.
    /// </summary>
    public Backend? Select(in RoutingRequest request, ref AttemptedBackends attempted)
    {
        var routable = Routable;
        if (routable.Length == 0)
        {
            return null;
        }
        var index = Algorithm.Pick(in request);
        if ((uint)index >= (uint)routable.Length)
        {
            return null;
        }
        if (_slowStartAdmission is not null && routable[index].SlowStartFactor < 1 && routable.Length > 1
            && _slowStartAdmission.NextDouble() >= routable[index].SlowStartFactor)
        {
            index = (index + 1) % routable.Length;
        }
        if (attempted.Contains(index))
        {
            // The algorithm's first choice already failed: walk on from it so a retry lands on a
            // neighbour (the next ring position for the hashing algorithms).
            var found = -1;
            for (var step = 1; step < routable.Length; step++)
            {
                var candidate = (index + step) % routable.Length;
                if (!attempted.Contains(candidate))
                {
                    found = candidate;
                    break;
                }
            }
            if (found < 0)
            {
                return null;
            }
            index = found;
        }
        attempted.Add(index);
        return routable[index];
    }
}

/// <summary>The indexes of the backends one request has tried, without allocating for the first 64.</summary>
public struct AttemptedBackends
{
    private ulong _first64;
    private HashSet<int>? _more;

    /// <summary>True once the session's pinned backend has had its attempt.</summary>
    public bool PinnedTried { get; set; }

    /// <summary>Number of attempts recorded.</summary>
    public int Count { get; private set; }

    /// <summary>True when the backend at <paramref name="index"/> was tried.</summary>
    public readonly bool Contains(int index) =>
        index < 64 ? (_first64 & (1UL << index)) != 0 : _more?.Contains(index) == true;

    /// <summary>Records an attempt on the backend at <paramref name="index"/>.</summary>
    public void Add(int index)
    {
        Count++;
        if (index < 64)
        {
            _first64 |= 1UL << index;
        }
        else
        {
            (_more ??= new HashSet<int>()).Add(index);
        }
    }
}
