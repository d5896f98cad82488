using Balancer.Configuration;

namespace Balancer.Routing;

/// <summary>
/// How many requests that reached a backend a pool may send again (<c>retry.budget</c>): at most a
/// share of its requests of the current and the previous second, besides a few a second, so that a
/// pool whose every backend fails is not sent a multiple of its traffic. Counted with interlocked
/// increments; the counts move to the previous second under a lock taken once a second.
/// </summary>
public sealed class RetryBudget
{
    private readonly Lock _roll = new();
    private long _second;
    private long _requests;
    private long _retries;
    private long _previousRequests;
    private long _previousRetries;
    private long _refused;

    /// <summary>Retries the budget refused since start.</summary>
    public long Refused => Volatile.Read(ref _refused);

    /// <summary>A request was forwarded to the pool.</summary>
    public void CountRequest()
    {
        Roll();
        Interlocked.Increment(ref _requests);
    }

    /// <summary>True when the budget would allow a retry now (without taking it); a refusal is counted.</summary>
    public bool HasRoom(RetrySettings settings)
    {
        Roll();
        var requests = Volatile.Read(ref _requests) + Volatile.Read(ref _previousRequests);
        var retries = Volatile.Read(ref _retries) + Volatile.Read(ref _previousRetries);
        // Two seconds of requests are counted: allow two seconds' worth of the minimum too.
        if (retries < settings.Budget * requests + 2 * settings.MinPerSecond)
        {
            return true;
        }
        Interlocked.Increment(ref _refused);
        return false;
    }

    /// <summary>Takes one retry that <see cref="HasRoom"/> allowed a moment ago (concurrent requests may overshoot the budget by a few).</summary>
    public void Take() => Interlocked.Increment(ref _retries);

    /// <summary>Takes one retry when the budget allows it.</summary>
    public bool TryTake(RetrySettings settings)
    {
        if (!HasRoom(settings))
        {
            return false;
        }
        Interlocked.Increment(ref _retries);
        return true;
    }

    private void Roll()
    {
        var now = Environment.TickCount64 / 1000;
        if (Volatile.Read(ref _second) == now)
        {
            return;
        }
        lock (_roll)
        {
            var second = _second;
            if (second == now)
            {
                return;
            }
            // A gap of more than a second leaves nothing in the previous second.
            var adjacent = now - second == 1;
            Volatile.Write(ref _previousRequests, adjacent ? Interlocked.Exchange(ref _requests, 0) : 0);
            Volatile.Write(ref _previousRetries, adjacent ? Interlocked.Exchange(ref _retries, 0) : 0);
            if (!adjacent)
            {
                Interlocked.Exchange(ref _requests, 0);
                Interlocked.Exchange(ref _retries, 0);
            }
            Volatile.Write(ref _second, now);
        }
    }
}
