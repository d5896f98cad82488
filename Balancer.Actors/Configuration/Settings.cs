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
    bool DownSelfWhenStalled = true,
    bool WatchConfig = true);

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
    ImmutableArray<SniRoute> SniRoutes,
    HttpProtocolsSetting Protocols = HttpProtocolsSetting.Http1AndHttp2,
    ImmutableArray<RouteSettings> Routes = default,
    TimeSpan TunnelIdleTimeout = default,
    bool Http1FastPath = true,
    bool EventLoop = true)
{
    /// <summary>The routes in the order they are matched (never default).</summary>
    public ImmutableArray<RouteSettings> Routes { get; init; } = Routes.IsDefault ? ImmutableArray<RouteSettings>.Empty : Routes;

    /// <summary>How long an upgraded connection (WebSocket) may stay idle; the request timeout does not apply to it.</summary>
    public TimeSpan TunnelIdleTimeout { get; init; } = TunnelIdleTimeout == default ? TimeSpan.FromHours(1) : TunnelIdleTimeout;
}

/// <summary>What an HTTP frontend speaks to clients (<c>protocols</c>).</summary>
public enum HttpProtocolsSetting
{
    /// <summary>HTTP/1.1 only.</summary>
    Http1,
    /// <summary>HTTP/2 only: by ALPN with TLS, with prior knowledge in cleartext (gRPC clients).</summary>
    Http2,
    /// <summary>Both: ALPN chooses with TLS; in cleartext the connection preface tells HTTP/2 (prior knowledge) from HTTP/1.1.</summary>
    Http1AndHttp2,
}

/// <summary>What a pool speaks to its backends (<c>protocol</c>).</summary>
public enum BackendProtocol
{
    /// <summary>Cleartext HTTP/1.1.</summary>
    Http1,
    /// <summary>Cleartext HTTP/2 with prior knowledge (h2c), as gRPC servers take it.</summary>
    Http2,
    /// <summary>HTTP/1.1 over TLS.</summary>
    Https,
    /// <summary>HTTP/2 over TLS (ALPN h2).</summary>
    Https2,
}

/// <summary>TLS to a pool's backends (<c>protocol = https | https2</c>, section <c>tls</c>).</summary>
/// <param name="Authority">PEM file of the CA certificates that may issue a backend's certificate; empty: the system store.</param>
/// <param name="Verify">False accepts any certificate (warned about at start).</param>
/// <param name="ServerName">The name a backend's certificate must carry; empty: the name the request is sent for.</param>
/// <param name="ClientCertificate">The certificate this node presents to backends (mTLS), or null.</param>
/// <param name="PasswordEnv">Environment variable holding the client key's or PFX's password.</param>
public sealed record BackendTlsSettings(string Authority, bool Verify, string ServerName, CertificateFiles? ClientCertificate, string PasswordEnv);

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
    int DefaultWeight,
    BackendProtocol Protocol = BackendProtocol.Http1,
    BackendTlsSettings? Tls = null,
    RetrySettings? Retry = null,
    GrpcStatusSet? GrpcFailures = null)
{
    /// <summary>When a request that reached a backend is sent again (never null).</summary>
    public RetrySettings Retry { get; init; } = Retry ?? RetrySettings.Default;

    /// <summary>The gRPC status codes that count as a backend's failure in passive health and metrics (never null).</summary>
    public GrpcStatusSet GrpcFailures { get; init; } = GrpcFailures ?? GrpcStatusSet.Default;

    /// <summary>True when the pool speaks TLS to its backends.</summary>
    public bool UsesTls => Protocol is BackendProtocol.Https or BackendProtocol.Https2;

    /// <summary>True when the pool speaks HTTP/2 to its backends.</summary>
    public bool UsesHttp2 => Protocol is BackendProtocol.Http2 or BackendProtocol.Https2;
}

/// <summary>
/// Retries of requests that reached a backend (<c>retry</c>). A request is sent again, to another
/// backend, only when its method is one of <paramref name="Methods"/>, it has no body, and nothing
/// of the response has reached the client; at most <paramref name="Budget"/> of the pool's recent
/// requests (and at least <paramref name="MinPerSecond"/> a second) are such retries.
/// </summary>
/// <param name="OnReset">Retry when the backend resets or closes the connection before any response byte.</param>
/// <param name="OnStatus">Response statuses (502, 503, 504) that are retried, its body discarded.</param>
/// <param name="Methods">The methods that may be sent twice (idempotent ones).</param>
/// <param name="Budget">The share of recent requests that may be retries.</param>
/// <param name="MinPerSecond">Retries allowed a second whatever the budget (a quiet pool still retries).</param>
public sealed record RetrySettings(bool OnReset, ImmutableArray<int> OnStatus, ImmutableHashSet<string> Methods, double Budget, int MinPerSecond)
{
    /// <summary>The defaults of reference.conf.</summary>
    public static readonly RetrySettings Default = new(true, ImmutableArray<int>.Empty,
        ImmutableHashSet.Create(StringComparer.Ordinal, "GET", "HEAD", "OPTIONS", "PUT", "DELETE"), 0.2, 3);
}

/// <summary>A set of gRPC status codes (0-16).</summary>
public sealed record GrpcStatusSet(int Mask)
{
    /// <summary>
    /// UNKNOWN, INTERNAL, UNAVAILABLE and DATA_LOSS: the codes a server's trouble shows as
    /// (DEADLINE_EXCEEDED is left out: the client sets the deadline, and could get backends ejected).
    /// </summary>
    public static readonly GrpcStatusSet Default = new((1 << 2) | (1 << 13) | (1 << 14) | (1 << 15));

    /// <summary>The code names gRPC gives, by number.</summary>
    public static readonly IReadOnlyList<string> Names =
    [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ];

    /// <summary>True when <paramref name="code"/> is in the set.</summary>
    public bool Contains(int code) => code is >= 0 and <= 16 && (Mask & (1 << code)) != 0;

    /// <summary>Parses a code by number (14) or name (UNAVAILABLE, any case).</summary>
    public static bool TryParseCode(string text, out int code)
    {
        if (int.TryParse(text, out code) && code is >= 0 and <= 16)
        {
            return true;
        }
        for (code = 0; code < Names.Count; code++)
        {
            if (string.Equals(Names[code], text, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        code = -1;
        return false;
    }

    /// <inheritdoc />
    public override string ToString() => string.Join(",", Enumerable.Range(0, 17).Where(Contains).Select(c => Names[c]));
}

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

/// <summary>
/// One route of an HTTP frontend (<c>routes</c>, matched in order; the first whose every condition
/// holds names the pool, and a request no route matches goes to the frontend's <c>pool</c>).
/// </summary>
/// <param name="Name">Its name in logs, traces and problems.</param>
/// <param name="Hosts">Host names the request's Host must be one of ("api.example.com", or "*.example.com" for any name below it); empty: any.</param>
/// <param name="Path">The path condition, or null for any path.</param>
/// <param name="Methods">Methods the request must use one of; empty: any.</param>
/// <param name="Headers">Header conditions, all of which must hold.</param>
/// <param name="Pool">The pool the route sends to.</param>
/// <param name="RequestHeaders">Headers set on and removed from the request forwarded.</param>
/// <param name="ResponseHeaders">Headers set on and removed from the response returned.</param>
/// <param name="RewritePrefix">With a path-prefix condition: what replaces the matched prefix ("" strips it); null keeps the path.</param>
/// <param name="RequestTimeout">Replaces the pool's request-timeout for this route, or null.</param>
public sealed record RouteSettings(
    string Name,
    ImmutableArray<string> Hosts,
    PathMatch? Path,
    ImmutableArray<string> Methods,
    ImmutableArray<HeaderMatch> Headers,
    string Pool,
    HeaderChanges RequestHeaders,
    HeaderChanges ResponseHeaders,
    string? RewritePrefix,
    TimeSpan? RequestTimeout);

/// <summary>How a route matches the path.</summary>
public enum PathMatchKind
{
    /// <summary>The path starts with the value (as HAProxy's path_beg and Envoy's prefix: "/api" matches "/apiary"; write "/api/" for a segment).</summary>
    Prefix,
    /// <summary>The path is the value.</summary>
    Exact,
    /// <summary>A regular expression finds a match in the path (anchor it with ^ and $ to match the whole).</summary>
    Regex,
}

/// <summary>A route's path condition; the path is the decoded request path, without the query.</summary>
public sealed record PathMatch(PathMatchKind Kind, string Value);

/// <summary>How a route matches a header.</summary>
public enum HeaderMatchKind
{
    /// <summary>The header is present ("NAME").</summary>
    Present,
    /// <summary>A value of the header is exactly this ("NAME=VALUE").</summary>
    Equals,
    /// <summary>A regular expression finds a match in a value of the header ("NAME=~REGEX").</summary>
    Regex,
}

/// <summary>A route's header condition.</summary>
public sealed record HeaderMatch(string Name, HeaderMatchKind Kind, string Value)
{
    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        HeaderMatchKind.Present => Name,
        HeaderMatchKind.Equals => $"{Name}={Value}",
        _ => $"{Name}=~{Value}",
    };
}

/// <summary>Headers a route sets (replacing any of that name) and removes.</summary>
public sealed record HeaderChanges(ImmutableArray<KeyValuePair<string, string>> Set, ImmutableArray<string> Remove)
{
    /// <summary>No change.</summary>
    public static readonly HeaderChanges None = new(ImmutableArray<KeyValuePair<string, string>>.Empty, ImmutableArray<string>.Empty);

    /// <summary>True when nothing is set or removed.</summary>
    public bool IsEmpty => Set.IsEmpty && Remove.IsEmpty;

    /// <summary>True when the header named <paramref name="name"/> (ASCII, any case) is set or removed.</summary>
    internal bool Changes(ReadOnlySpan<byte> name)
    {
        foreach (var removed in Remove)
        {
            if (removed.Length == name.Length && System.Text.Ascii.EqualsIgnoreCase(name, removed))
            {
                return true;
            }
        }
        foreach (var (set, _) in Set)
        {
            if (set.Length == name.Length && System.Text.Ascii.EqualsIgnoreCase(name, set))
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>etcd as the central store and service registry (<c>balancer.config-source.etcd</c>).</summary>
/// <param name="Endpoints">The members' client URLs.</param>
/// <param name="Prefix">The key prefix: <c>PREFIX/config</c>, <c>PREFIX/pools/POOL/backends/NAME</c>.</param>
/// <param name="Username">For etcd authentication; empty when off.</param>
/// <param name="PasswordEnv">The environment variable holding the password.</param>
public sealed record EtcdSettings(System.Collections.Immutable.ImmutableArray<Uri> Endpoints, string Prefix, string Username, string PasswordEnv)
{
    /// <summary>The key of the cluster configuration.</summary>
    public string ConfigKey => Prefix + "/config";

    /// <summary>The prefix under which backends register.</summary>
    public string PoolsPrefix => Prefix + "/pools/";
}
