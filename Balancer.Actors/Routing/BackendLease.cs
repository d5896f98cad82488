using Balancer.Affinity;
using Balancer.Model;

namespace Balancer.Routing;

/// <summary>How an attempt on a leased backend went; feeds passive health and least-connections.</summary>
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
/// One attempt's use of a backend, as <see cref="BackendSelection.Next"/> hands it out: the backend
/// to send to, whether the session must be pinned to it once it answers, and <see cref="Complete"/>
/// to report how the attempt went. A struct, so an attempt of a request without a new session
/// allocates nothing; complete it exactly once.
/// </summary>
public readonly struct BackendLease
{
    private readonly long _started;
    private readonly SessionPin? _pin;

    internal BackendLease(Backend backend, SessionPin? pin)
    {
        Backend = backend;
        _pin = pin;
        _started = System.Diagnostics.Stopwatch.GetTimestamp();
    }

    /// <summary>The backend, or null when the pool has none left to try.</summary>
    public Backend? Backend { get; }

    /// <summary>True when a backend was leased.</summary>
    public bool HasBackend => Backend is not null;

    /// <summary>
    /// True when the request's session is new, moved, or was served elsewhere than where it was
    /// pinned: it must be pinned to this backend once the backend answers.
    /// </summary>
    public bool PinsSession => _pin is not null;

    /// <summary>
    /// Pins the session to this backend when <see cref="PinsSession"/> (once per lease); completes
    /// when the pool's write consistency is met or given up on, and never faults.
    /// </summary>
    internal Task PinSessionAsync(CancellationToken cancellationToken = default) =>
        _pin is null || Backend is null ? Task.CompletedTask : _pin.PinAsync(Backend, cancellationToken);

    /// <summary>Pins a session the backend started in its answer (learn-cookie) to this backend; never faults.</summary>
    internal Task PinLearnedSessionAsync(string key) => _pin is null || Backend is null ? Task.CompletedTask : SessionPin.PinAsync(_pin.Table, key, Backend);

    /// <summary>
    /// Reports the attempt's outcome (and, for an answer, its status code) into the backend's
    /// counters. An answer pins the session (without waiting) if the caller has not pinned it yet.
    /// </summary>
    /// <summary>
    /// The backend answered <paramref name="statusCode"/>, which the proxy dropped to ask another
    /// backend (<c>retry.on-status</c>): counted, and a failure when <paramref name="failed"/>, but
    /// no session is pinned to the backend whose answer nobody got.
    /// </summary>
    public void CompleteDropped(int statusCode, bool failed)
    {
        if (Backend?.Counters is not { } counters)
        {
            return;
        }
        counters.ObserveResponse(statusCode, System.Diagnostics.Stopwatch.GetTimestamp() - _started);
        counters.Finish(success: !failed);
    }

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
                _ = PinSessionAsync();
                break;
            case BackendOutcome.Failed:
                if (statusCode != 0)
                {
                    counters.ObserveResponse(statusCode, System.Diagnostics.Stopwatch.GetTimestamp() - _started);
                }
                counters.Finish(success: false);
                if (statusCode != 0)
                {
                    // Only a failure the backend answered with (a 5xx) is an answer to pin to.
                    _ = PinSessionAsync();
                }
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

/// <summary>
/// The session one lease must pin: the pool's table, the session's key (none for cookie mode, or
/// when a learned key is still to come), and whether the pin is provisional (the cluster's copy of
/// the session could not be read).
/// </summary>
internal sealed class SessionPin(AffinityTable table, string? key, bool provisional = false)
{
    private int _pinned;

    public AffinityTable Table { get; } = table;

    public Task PinAsync(Backend backend, CancellationToken cancellationToken = default) =>
        key is null || Interlocked.Exchange(ref _pinned, 1) != 0 ? Task.CompletedTask : PinAsync(Table, key, backend, provisional, cancellationToken);

    /// <summary>
    /// Pins <paramref name="sessionKey"/> and waits at most the write timeout for the pool's write
    /// consistency. A pin that is not confirmed (a majority out of reach, the store restarting) is
    /// still pinned on this node and spreads by gossip: the request is served all the same, and
    /// the pin is counted in <see cref="AffinityTable.UnconfirmedPins"/>. A provisional pin is
    /// counted there at once and not waited for: the cluster did not acknowledge it, whatever the write does.
    /// </summary>
    public static async Task PinAsync(AffinityTable table, string sessionKey, Backend backend, bool provisional = false, CancellationToken cancellationToken = default)
    {
        if (provisional)
        {
            table.CountUnconfirmedPin();
            _ = table.Pin(sessionKey, backend.Name, provisional: true).ContinueWith(static t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);
            return;
        }
        try
        {
            await table.Pin(sessionKey, backend.Name).WaitAsync(table.WriteTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception)
        {
            table.CountUnconfirmedPin();
        }
    }
}
