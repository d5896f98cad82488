using System.Collections.Immutable;
using System.Net;

namespace Balancer.Configuration;

/// <summary>How the nodes of a cluster share the frontends.</summary>
public enum NodeMode
{
    /// <summary>Every node opens its frontends.</summary>
    ActiveActive,
    /// <summary>Only the active node (chosen by a cluster singleton) opens its frontends.</summary>
    ActivePassive,
}

/// <summary>The protocol a frontend speaks.</summary>
public enum FrontendMode
{
    /// <summary>L7: Kestrel terminates HTTP and YARP forwards each request.</summary>
    Http,
    /// <summary>L4: each client connection is spliced to one backend connection.</summary>
    Tcp,
}

/// <summary>Node-wide settings (<c>balancer.node</c>).</summary>
public sealed record NodeSettings(
    NodeMode Mode,
    string Role,
    bool AdminEnabled,
    EndpointAddress AdminBind,
    string AdminToken,
    IReadOnlyList<string> AdminAllowedHosts,
    string OnActiveHook,
    string OnPassiveHook,
    bool StartFrontends,
    TimeSpan FrontendStartTimeout,
    TimeSpan DrainTimeout,
    string DataDir,
    int ProbeShards,
    TimeSpan WriteTimeout,
    TimeSpan ReadTimeout,
    string AffinityKey,
    ClusterTlsSettings? ClusterTls,
    bool DownSelfWhenStalled = true);

/// <summary>Mutual TLS between nodes (<c>balancer.node.cluster-tls</c>).</summary>
/// <param name="Certificate">This node's certificate (PEM or PFX).</param>
/// <param name="Key">Its PEM private key, when not in the certificate file.</param>
/// <param name="Authority">The cluster CA's certificate: peers must present a certificate it issued.</param>
/// <param name="PasswordEnv">Environment variable holding the key's or PFX's password.</param>
/// <param name="NodeNames">When not empty, the names (CN or DNS) a peer's certificate must carry one of.</param>
public sealed record ClusterTlsSettings(string Certificate, string Key, string Authority, string PasswordEnv, IReadOnlyList<string> NodeNames);

/// <summary>One frontend (<c>balancer.frontends.NAME</c>).</summary>
public sealed record FrontendSettings(
    string Name,
    FrontendMode Mode,
    ImmutableArray<EndpointAddress> Bind,
    string Pool,
    bool ReusePort,
    TimeSpan IdleTimeout,
    int MaxConnections,
    bool PreserveHost,
    ForwardedHeadersMode ForwardedHeaders,
    ImmutableArray<System.Net.IPNetwork> TrustedProxies,
    int MaxConnectionsPerClient,
    TimeSpan RequestHeadersTimeout,
    int MaxRequestHeaderBytes,
    int MaxRequestHeaders,
    int MaxRequestLineBytes,
    int MinRequestBodyBytesPerSecond,
    TlsSettings? Tls,
    ImmutableArray<SniRoute> SniRoutes);

/// <summary>What an HTTP frontend tells backends about the client (<c>forwarded-headers</c>).</summary>
public enum ForwardedHeadersMode
{
    /// <summary>Append the client to X-Forwarded-For; keep incoming forwarding headers from trusted proxies only.</summary>
    Append,
    /// <summary>Set the forwarding headers from this hop alone; incoming ones are removed.</summary>
    Replace,
    /// <summary>Add and remove nothing.</summary>
    Off,
}

/// <summary>A TCP frontend's TLS passthrough rule: connections whose ClientHello asks for <paramref name="ServerName"/> ("*.x" matches one label) go to <paramref name="Pool"/>.</summary>
public sealed record SniRoute(string ServerName, string Pool);

/// <summary>A certificate file and its private key file (empty when the key is in the certificate file or it is a PFX).</summary>
public sealed record CertificateFiles(string Certificate, string Key);

/// <summary>TLS on an HTTP frontend: the default certificate first, then those chosen by SNI.</summary>
/// <param name="Certificates">The default certificate, then the SNI ones.</param>
/// <param name="PasswordEnv">Environment variable holding the password of encrypted keys or PFX files.</param>
/// <param name="Hsts">Strict-Transport-Security max-age to send, or null.</param>
public sealed record TlsSettings(ImmutableArray<CertificateFiles> Certificates, string PasswordEnv, TimeSpan? Hsts);

/// <summary>A backend of a pool (<c>balancer.pools.POOL.backends.NAME</c>).</summary>
public sealed record BackendSettings(string Name, EndpointAddress Address, int Weight);

/// <summary>Active health-check settings of a pool.</summary>
public sealed record HealthCheckSettings(
    HealthCheckKind Kind,
    string Path,
    StatusCodeRanges ExpectStatus,
    string ExpectBody,
    TimeSpan Interval,
    TimeSpan Timeout,
    int Rise,
    int Fall,
    TimeSpan FastInterval,
    TimeSpan DownInterval,
    double Jitter,
    ProbePlacement Placement);

/// <summary>What an active health check does.</summary>
public enum HealthCheckKind { Http, Tcp, None }

/// <summary>Where the probes of a pool run.</summary>
public enum ProbePlacement { Sharded, EveryNode }

/// <summary>Passive health (outlier ejection) settings of a pool.</summary>
public sealed record PassiveHealthSettings(
    int ConsecutiveFailures,
    bool Count5xx,
    TimeSpan Ejection,
    TimeSpan MaxEjection,
    double MaxEjectedPercent);

/// <summary>Session-affinity settings of a pool.</summary>
public sealed record AffinitySettings(
    AffinityMode Mode,
    string KeyName,
    string CookieName,
    TimeSpan Ttl,
    AffinityWriteConsistency Write,
    int Buckets,
    int MaxEntries,
    int NewSessionsPerClient)
{
    /// <summary><c>buckets = auto</c> makes one bucket per this many sessions of max-entries (16 at least).</summary>
    public const int SessionsPerAutomaticBucket = 1000;

    /// <summary>
    /// A bucket holding more sessions would not fit in the smallest remoting frame Akka allows
    /// (32,000 bytes) at 18 bytes a session.
    /// </summary>
    public const int MaxSessionsPerBucket = 1500;

    /// <summary>
    /// The sessions each replicated bucket keeps at most: its share of max-entries, plus four
    /// standard deviations of how unevenly hashing fills buckets, so that a table of max-entries
    /// sessions never has one evicted (the table may hold a little more).
    /// </summary>
    public int BucketCapacity => CapacityOf(MaxEntries, Buckets);

    internal static int CapacityOf(int maxEntries, int buckets)
    {
        var share = (maxEntries + buckets - 1) / buckets;
        return share + (int)Math.Ceiling(4 * Math.Sqrt(share));
    }
}

/// <summary>How a session is recognised.</summary>
public enum AffinityMode { None, Cookie, LearnCookie, Header, SourceIp }

/// <summary>How an affinity entry is written to the replicated table.</summary>
public enum AffinityWriteConsistency { Local, Majority }

/// <summary>One pool (<c>balancer.pools.NAME</c>).</summary>
public sealed record PoolSettings(
    string Name,
    string Algorithm,
    HashKey HashKey,
    AffinitySettings Affinity,
    HealthCheckSettings HealthCheck,
    PassiveHealthSettings Passive,
    double PanicThreshold,
    TimeSpan SlowStart,
    int Retries,
    TimeSpan ConnectTimeout,
    TimeSpan RequestTimeout,
    ImmutableArray<BackendSettings> Backends,
    int DefaultWeight);

/// <summary>A "HOST:PORT" address as written in the configuration.</summary>
public sealed record EndpointAddress(string Host, int Port)
{
    /// <summary>The address as an <see cref="IPEndPoint"/> when the host is an IP literal.</summary>
    public IPEndPoint? IPEndPoint => IPAddress.TryParse(Host, out var ip) ? new IPEndPoint(ip, Port) : null;

    /// <summary>Parses "HOST:PORT", "IP:PORT" or "[IPV6]:PORT"; port 0 (any free port) only when <paramref name="allowAnyPort"/>.</summary>
    public static bool TryParse(string? text, out EndpointAddress address, out string error, bool allowAnyPort = false)
    {
        address = null!;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            error = "expected HOST:PORT, got an empty value";
            return false;
        }
        string host;
        string portText;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']');
            if (close < 0 || close + 1 >= text.Length || text[close + 1] != ':')
            {
                error = $"expected [IPV6]:PORT, got \"{text}\"";
                return false;
            }
            host = text[1..close];
            portText = text[(close + 2)..];
            if (!IPAddress.TryParse(host, out _))
            {
                error = $"\"{host}\" is not an IPv6 address";
                return false;
            }
        }
        else
        {
            var colon = text.LastIndexOf(':');
            if (colon <= 0 || text.IndexOf(':') != colon)
            {
                error = $"expected HOST:PORT, got \"{text}\"";
                return false;
            }
            host = text[..colon];
            portText = text[(colon + 1)..];
            if (Uri.CheckHostName(host) == UriHostNameType.Unknown)
            {
                error = $"\"{host}\" is not a host name or IP address";
                return false;
            }
        }
        if (!int.TryParse(portText, System.Globalization.NumberStyles.None, null, out var port) || port < (allowAnyPort ? 0 : 1) || port > 65535)
        {
            error = $"port \"{portText}\" is not a number from {(allowAnyPort ? 0 : 1)} to 65535";
            return false;
        }
        address = new EndpointAddress(host, port);
        error = "";
        return true;
    }

    /// <inheritdoc />
    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>A set of HTTP status codes, written "200-399,404".</summary>
public sealed record StatusCodeRanges(ImmutableArray<(int From, int To)> Ranges)
{
    /// <summary>True when <paramref name="status"/> is in one of the ranges.</summary>
    public bool Contains(int status)
    {
        foreach (var (from, to) in Ranges)
        {
            if (status >= from && status <= to)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Parses "200-399,404".</summary>
    public static bool TryParse(string text, out StatusCodeRanges ranges)
    {
        var builder = ImmutableArray.CreateBuilder<(int, int)>();
        ranges = null!;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-');
            var fromText = dash < 0 ? part : part[..dash];
            var toText = dash < 0 ? part : part[(dash + 1)..];
            if (!int.TryParse(fromText, out var from) || !int.TryParse(toText, out var to) || from < 100 || to > 599 || from > to)
            {
                return false;
            }
            builder.Add((from, to));
        }
        if (builder.Count == 0)
        {
            return false;
        }
        ranges = new StatusCodeRanges(builder.ToImmutable());
        return true;
    }

    /// <inheritdoc />
    public override string ToString() => string.Join(",", Ranges.Select(r => r.From == r.To ? $"{r.From}" : $"{r.From}-{r.To}"));
}

/// <summary>Where state-change alerts go (<c>balancer.alerts</c>).</summary>
/// <param name="Webhooks">URLs that receive a JSON POST per alert.</param>
/// <param name="Timeout">How long one POST may take.</param>
/// <param name="MaxAttempts">Attempts per alert and webhook, with doubling backoff, before it is dropped with a log line.</param>
/// <param name="QueueLimit">Alerts waiting per webhook beyond which the oldest are dropped (a dead receiver must not hold memory).</param>
/// <param name="Thresholds">Per-backend error-rate and latency alerts on this node's traffic.</param>
public sealed record AlertSettings(ImmutableArray<Uri> Webhooks, TimeSpan Timeout, int MaxAttempts, int QueueLimit, ThresholdSettings Thresholds);

/// <summary>Per-backend alert thresholds (<c>balancer.alerts.thresholds</c>); 0 turns one off.</summary>
public sealed record ThresholdSettings(double ErrorRate, TimeSpan P99Latency, TimeSpan Window, int MinRequests)
{
    /// <summary>True when any threshold is set.</summary>
    public bool Any => ErrorRate > 0 || P99Latency > TimeSpan.Zero;
}

/// <summary>OpenTelemetry export (<c>balancer.telemetry.otlp</c>); off while <see cref="Endpoint"/> is null.</summary>
public sealed record TelemetrySettings(Uri? Endpoint, OtlpProtocol Protocol, string Headers, double Sampling, TimeSpan ExportInterval)
{
    /// <summary>No export.</summary>
    public static readonly TelemetrySettings Off = new(null, OtlpProtocol.HttpProtobuf, "", 1, TimeSpan.FromSeconds(5));
}

/// <summary>How OTLP is sent.</summary>
public enum OtlpProtocol { HttpProtobuf, Grpc }
