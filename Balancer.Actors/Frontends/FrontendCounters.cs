namespace Balancer.Frontends;

/// <summary>
/// Lock-free traffic counters of one frontend, kept across the frontend being closed and reopened
/// (active-passive): requests (HTTP) or connections (TCP) accepted, open now, and refused.
/// </summary>
public sealed class FrontendCounters
{
    private long _accepted;
    private long _open;
    private long _refused;
    private long _refusedPerClient;
    private long _tunnels;
    private long _fastPath;

    internal FrontendCounters(string frontend) => Frontend = frontend;

    /// <summary>Name of the frontend.</summary>
    public string Frontend { get; }

    /// <summary>HTTP requests or TCP connections accepted since start.</summary>
    public long Accepted => Volatile.Read(ref _accepted);

    /// <summary>HTTP requests or TCP connections in progress.</summary>
    public long Open => Volatile.Read(ref _open);

    /// <summary>The addresses the frontend listens on now; empty while it is closed (a standby, or not bound yet).</summary>
    public IReadOnlyList<System.Net.IPEndPoint> Listening { get; internal set; } = [];

    /// <summary>TCP connections closed at accept because max-connections was reached.</summary>
    public long Refused => Volatile.Read(ref _refused);

    /// <summary>Connections closed at accept because their client address had max-connections-per-client open.</summary>
    public long RefusedPerClient => Volatile.Read(ref _refusedPerClient);

    /// <summary>Upgraded connections (WebSockets) open now; each is also one of <see cref="Open"/>.</summary>
    public long Tunnels => Volatile.Read(ref _tunnels);

    /// <summary>HTTP requests forwarded by the HTTP/1.1 fast path since start; each is also one of <see cref="Accepted"/>.</summary>
    public long FastPath => Volatile.Read(ref _fastPath);

    /// <summary>Counts one accepted request that the HTTP/1.1 fast path forwards; returns how many are open now.</summary>
    internal long AcceptOnFastPath()
    {
        Interlocked.Increment(ref _fastPath);
        return Accept();
    }

    internal void OpenTunnel() => Interlocked.Increment(ref _tunnels);

    internal void CloseTunnel() => Interlocked.Decrement(ref _tunnels);

    internal void CountRefusedPerClient() => Interlocked.Increment(ref _refusedPerClient);

    /// <summary>Counts one accepted request or connection; returns how many are open now.</summary>
    public long Accept()
    {
        Interlocked.Increment(ref _accepted);
        return Interlocked.Increment(ref _open);
    }

    /// <summary>An accepted request or connection ended.</summary>
    public void Close() => Interlocked.Decrement(ref _open);

    /// <summary>A connection was closed at accept: it is no longer open, and counted as refused.</summary>
    public void Refuse()
    {
        Interlocked.Decrement(ref _open);
        Interlocked.Increment(ref _refused);
    }
}
