using System.Diagnostics;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using Balancer.Configuration;

namespace Balancer.Health;

/// <summary>
/// Active health checks of one backend: an HTTP GET (status ranges, optional body substring) or a
/// TCP connect, every <c>interval</c>, faster while the verdict is changing (<c>fast-interval</c>),
/// slower while down (<c>down-interval</c>), each spread by <c>jitter</c>. A check runs off the
/// actor's thread and its outcome comes back as a message, so checks never block and never overlap.
/// Verdicts (the first, after <c>rise</c>/<c>fall</c> checks, and every change) go to the node's
/// <see cref="HealthReporter"/>, which replicates them to every node. A check that fails while this
/// process was stalled (<see cref="ProcessStalls"/>) is not counted: the prober, not the backend, was down.
/// </summary>
internal sealed class HealthProbe : ReceiveActor, IWithTimers
{
    private const int MaxBodyBytes = 64 * 1024;

    private readonly string _pool;
    private readonly BackendSettings _backend;
    private readonly HealthCheckSettings _settings;
    private readonly ICanTell _reporter;
    private readonly HttpMessageInvoker _client;
    // What the pool speaks to its backends; null: cleartext HTTP/1.1.
    private readonly Routing.BackendTransport? _transport;
    private readonly Random _random;
    private readonly ProbeVerdict _verdict;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private string _lastFailure = "";
    private int _stalledChecks;
    private long _stalledSince;
    private static readonly TimeSpan MaxDiscounted = TimeSpan.FromSeconds(10);

    public HealthProbe(string pool, BackendSettings backend, HealthCheckSettings settings, ICanTell reporter, HttpMessageInvoker client, Random random, Routing.BackendTransport? transport = null)
    {
        _pool = pool;
        _backend = backend;
        _settings = settings;
        _reporter = reporter;
        _client = client;
        _transport = transport;
        _random = random;
        _verdict = new ProbeVerdict(settings.Rise, settings.Fall);

        Receive<Check>(_ =>
        {
            var started = Stopwatch.GetTimestamp();
            RunCheckAsync().ContinueWith(
                t => new Outcome(t.IsCompletedSuccessfully && t.Result is null, t.IsCompletedSuccessfully ? t.Result ?? "" : t.Exception!.GetBaseException().Message, started, Stopwatch.GetElapsedTime(started)),
                TaskScheduler.Default).PipeTo(Self);
        });
        Receive<Outcome>(outcome =>
        {
            // Not the backend's fault: check again soon, once this process runs again. For 10 s at
            // most: a node starved for longer (which downs itself meanwhile) judges as it can.
            if (!outcome.Success && ProcessStalls.StalledSince(outcome.Started, out var stalled)
                && (_stalledChecks == 0 || Stopwatch.GetElapsedTime(_stalledSince) < MaxDiscounted))
            {
                if (_stalledChecks++ == 0)
                {
                    _stalledSince = Stopwatch.GetTimestamp();
                    _log.Warning("health checks of {0}/{1} from this node are not counted while this process stalls ({2:0} ms without running)",
                        _pool, _backend.Name, stalled.TotalMilliseconds);
                }
                Timers.StartSingleTimer("check", Check.Instance, _settings.FastInterval);
                return;
            }
            _stalledChecks = 0;
            if (!outcome.Success)
            {
                _lastFailure = outcome.Failure;
            }
            if (_verdict.Record(outcome.Success))
            {
                var reason = _verdict.Up
                    ? $"{_settings.Rise} check(s) passed ({Describe()}, {outcome.Latency.TotalMilliseconds:0}ms)"
                    : $"{_settings.Fall} check(s) failed, last: {_lastFailure}";
                _reporter.Tell(new Verdict(_pool, _backend.Name, _verdict.Up, reason), Self);
            }
            Timers.StartSingleTimer("check", Check.Instance, NextDelay());
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>True when a probe started for <paramref name="running"/> checks as one for <paramref name="next"/> would: same check, same protocol and TLS.</summary>
    internal static bool ChecksAlike(PoolSettings running, PoolSettings next) =>
        running.Protocol == next.Protocol && SettingsComparer.Same(running.HealthCheck, next.HealthCheck) && SettingsComparer.Same(running.Tls, next.Tls);

    public static Props Props(string pool, BackendSettings backend, HealthCheckSettings settings, ICanTell reporter, HttpMessageInvoker client, Random? random = null, Routing.BackendTransport? transport = null) =>
        Akka.Actor.Props.Create(() => new HealthProbe(pool, backend, settings, reporter, client, random ?? Random.Shared, transport));

    /// <summary>A probe's first verdict on a backend, and every change of it after.</summary>
    public sealed record Verdict(string Pool, string Backend, bool Up, string Reason);

    protected override void PreStart()
    {
        ProcessStalls.EnsureWatching();
        // The first check lands anywhere in the first interval so a pool's probes start spread out.
        Timers.StartSingleTimer("check", Check.Instance, TimeSpan.FromTicks((long)(_settings.Interval.Ticks * _random.NextDouble())));
    }

    private TimeSpan NextDelay()
    {
        var basis = _verdict.Changing ? _settings.FastInterval : _verdict.Up ? _settings.Interval : _settings.DownInterval;
        var spread = 1 + _settings.Jitter * (2 * _random.NextDouble() - 1);
        return TimeSpan.FromTicks((long)(basis.Ticks * spread));
    }

    private string Describe() => _settings.Kind == HealthCheckKind.Http ? $"GET {_settings.Path}" : "connect";

    /// <summary>Null on success, else why the check failed.</summary>
    private async Task<string?> RunCheckAsync()
    {
        using var timeout = new CancellationTokenSource(_settings.Timeout);
        try
        {
            return _settings.Kind == HealthCheckKind.Tcp
                ? await ConnectAsync(timeout.Token).ConfigureAwait(false)
                : await GetAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return $"no answer within {_settings.Timeout.TotalMilliseconds:0}ms";
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException socket)
        {
            return socket.SocketErrorCode == SocketError.ConnectionRefused ? "connection refused" : socket.Message;
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException)
        {
            return e.Message;
        }
    }

    private async Task<string?> GetAsync(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{_transport?.Scheme ?? "http"}://{_backend.Address}{_settings.Path}");
        if (_transport is { } transport)
        {
            request.Version = transport.Version;
            request.VersionPolicy = transport.VersionPolicy;
        }
        if (request.Version.Major < 2)
        {
            request.Headers.ConnectionClose = true;
        }
        request.Headers.UserAgent.ParseAdd("balancer-health-check");
        using var response = await _client.SendAsync(request, cancellationToken).ConfigureAwait(false);
        var status = (int)response.StatusCode;
        if (!_settings.ExpectStatus.Contains(status))
        {
            return $"HTTP {status} (expected {_settings.ExpectStatus})";
        }
        if (_settings.ExpectBody.Length == 0)
        {
            return null;
        }
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        var buffer = new byte[MaxBodyBytes];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await body.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
        {
            total += read;
        }
        var text = System.Text.Encoding.UTF8.GetString(buffer, 0, total);
        return text.Contains(_settings.ExpectBody, StringComparison.Ordinal) ? null : $"body lacks \"{_settings.ExpectBody}\"";
    }

    private async Task<string?> ConnectAsync(CancellationToken cancellationToken)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        var endPoint = _backend.Address.IPEndPoint ?? (System.Net.EndPoint)new System.Net.DnsEndPoint(_backend.Address.Host, _backend.Address.Port);
        await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
        return null;
    }

    private sealed class Check
    {
        public static readonly Check Instance = new();
        private Check() { }
    }

    /// <summary>A check's result; <paramref name="Started"/> is its <see cref="Stopwatch"/> timestamp.</summary>
    private sealed record Outcome(bool Success, string Failure, long Started, TimeSpan Latency);
}
