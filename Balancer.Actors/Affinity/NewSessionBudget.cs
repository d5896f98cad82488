using System.Diagnostics;
using System.Net;

namespace Balancer.Affinity;

/// <summary>
/// How many new sessions each client address may start: a token bucket per address, refilled at
/// <c>new-sessions-per-client</c> a second up to ten seconds' worth (the burst). The buckets live in a fixed table indexed
/// by a hash of the address, so a flood from many addresses costs no memory beyond it (addresses
/// that share a slot share a budget). Only a new session takes a slot's lock: requests of existing
/// sessions never come here.
/// </summary>
internal sealed class NewSessionBudget
{
    private const int Slots = 4096;

    /// <summary>Seconds of budget a client may spend at once.</summary>
    internal const int BurstSeconds = 10;

    private readonly double _perSecond;
    private readonly double _burst;
    private readonly Slot[] _slots;

    public NewSessionBudget(int perSecond)
    {
        _perSecond = perSecond;
        _burst = (double)perSecond * BurstSeconds;
        _slots = perSecond > 0 ? Enumerable.Range(0, Slots).Select(_ => new Slot { Tokens = _burst, RefilledAt = Stopwatch.GetTimestamp() }).ToArray() : [];
    }

    /// <summary>True when <paramref name="client"/> may start one more session now (and takes it from its budget).</summary>
    public bool TryTake(IPAddress client)
    {
        if (_slots.Length == 0)
        {
            return true;
        }
        var slot = _slots[(client.GetHashCode() & int.MaxValue) % Slots];
        lock (slot)
        {
            var now = Stopwatch.GetTimestamp();
            slot.Tokens = Math.Min(_burst, slot.Tokens + Stopwatch.GetElapsedTime(slot.RefilledAt, now).TotalSeconds * _perSecond);
            slot.RefilledAt = now;
            if (slot.Tokens < 1)
            {
                return false;
            }
            slot.Tokens--;
            return true;
        }
    }

    private sealed class Slot
    {
        public double Tokens;
        public long RefilledAt;
    }
}
