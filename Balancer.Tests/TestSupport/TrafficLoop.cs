namespace Balancer.Tests.TestSupport;

/// <summary>Requests a test keeps sending while it makes a fault: counted as served, moved (a session answered by another backend) or failed.</summary>
internal sealed class TrafficLoop
{
    private int _served;
    private int _moved;
    private readonly List<string> _failures = new();

    public CancellationTokenSource Stop { get; } = new();

    public Task Running { get; set; } = Task.CompletedTask;

    public void Count(bool moved)
    {
        Interlocked.Increment(ref _served);
        if (moved)
        {
            Interlocked.Increment(ref _moved);
        }
    }

    public void Fail(string why)
    {
        lock (_failures)
        {
            _failures.Add(why);
        }
    }

    public async Task<TrafficOutcome> StopAsync()
    {
        Stop.Cancel();
        await Running;
        lock (_failures)
        {
            return new TrafficOutcome(_served, _moved, _failures.Count, string.Join(" | ", _failures.Distinct().Take(5)));
        }
    }
}

/// <summary>What a <see cref="TrafficLoop"/> saw.</summary>
internal sealed record TrafficOutcome(int Served, int Moved, int Failed, string Failures)
{
    public override string ToString() => $"{Served} served, {Moved} moved, {Failed} failed" + (Failed > 0 ? $": {Failures}" : "");
}
