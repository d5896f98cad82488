using System.Diagnostics;

namespace Balancer;

/// <summary>
/// Notices when this process itself stops running for a while: a paused or CPU-starved VM, a
/// SIGSTOP, a long GC pause. A health check that fails across such a stall says nothing about its
/// backend (the answer may have been waiting in the socket while the timeout fired first), and
/// since one probe's verdict is every node's, a starved prober would otherwise take a healthy
/// backend out of the whole cluster. Cassandra's failure detector discounts its own node's pauses
/// for the same reason.
/// </summary>
/// <remarks>
/// One background thread per process, started by the first user, wakes every 50 ms; a wake-up
/// more than 250 ms after the previous one ends a stall. The thread is per process rather than per
/// actor system because a stall is: every system in the process stops with it.
/// </remarks>
internal static class ProcessStalls
{
    private const int PeriodMilliseconds = 50;
    private static readonly long Stall = Stopwatch.Frequency / 4;
    private static long _lastWake = Stopwatch.GetTimestamp();
    private static long _lastStallEnded = long.MinValue;
    private static long _latestLength;
    private static int _started;
    // The stalls of the last minute: when each ended, and how long it was (Stopwatch ticks).
    private static readonly Queue<(long Ended, long Length)> Recent = new();

    /// <summary>Starts the watching thread once per process.</summary>
    public static void EnsureWatching()
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            Volatile.Write(ref _lastWake, Stopwatch.GetTimestamp());
            new Thread(Watch) { IsBackground = true, Name = "balancer-stall-watch" }.Start();
        }
    }

    /// <summary>
    /// True when the process stalled at some moment after <paramref name="since"/> (a
    /// <see cref="Stopwatch"/> timestamp), or is coming out of a stall now (the watching thread
    /// has not run for longer than a stall); <paramref name="stalled"/> is how long, roughly.
    /// </summary>
    public static bool StalledSince(long since, out TimeSpan stalled)
    {
        var now = Stopwatch.GetTimestamp();
        var sinceWake = now - Volatile.Read(ref _lastWake);
        if (sinceWake > Stall)
        {
            stalled = Stopwatch.GetElapsedTime(0, sinceWake);
            return true;
        }
        if (Volatile.Read(ref _lastStallEnded) >= since)
        {
            stalled = Stopwatch.GetElapsedTime(0, Volatile.Read(ref _latestLength));
            return true;
        }
        stalled = TimeSpan.Zero;
        return false;
    }

    /// <summary>
    /// How long this process stood still in all within the last <paramref name="window"/> (at most
    /// a minute) and not before <paramref name="notBefore"/> (a <see cref="Stopwatch"/> timestamp),
    /// counting only stalls of 250 ms or more, and the one it may be in now.
    /// </summary>
    public static TimeSpan StalledWithin(TimeSpan window, long notBefore = 0)
    {
        var now = Stopwatch.GetTimestamp();
        var from = Math.Max(notBefore, now - (long)(window.TotalSeconds * Stopwatch.Frequency));
        var total = 0L;
        // Under the watcher's lock: a stall it has just recorded is never counted again as the current one.
        lock (Recent)
        {
            foreach (var (ended, length) in Recent)
            {
                // A stall that began before the window counts for the part inside it.
                total += ended <= from ? 0 : Math.Min(length, ended - from);
            }
            var current = now - _lastWake;
            if (current > Stall)
            {
                total += Math.Min(current, now - from);
            }
        }
        return Stopwatch.GetElapsedTime(0, total);
    }

    private static void Watch()
    {
        while (true)
        {
            Thread.Sleep(PeriodMilliseconds);
            var now = Stopwatch.GetTimestamp();
            lock (Recent)
            {
                var gap = now - _lastWake;
                if (gap > Stall)
                {
                    Volatile.Write(ref _latestLength, gap);
                    Volatile.Write(ref _lastStallEnded, now);
                    Recent.Enqueue((now, gap));
                    while (Recent.Count > 0 && now - Recent.Peek().Ended > Stopwatch.Frequency * 60)
                    {
                        Recent.Dequeue();
                    }
                }
                Volatile.Write(ref _lastWake, now);
            }
        }
    }
}
