using System.Buffers;
using System.Buffers.Text;
using System.Runtime.CompilerServices;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Balancer.Configuration;
using Balancer.Routing;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using ITlsApplicationProtocolFeature = Microsoft.AspNetCore.Server.Kestrel.Core.Features.ITlsApplicationProtocolFeature;

namespace Balancer.Frontends.Http;

/// <summary>
/// The HTTP/1.1 fast path of a cleartext HTTP frontend (<c>http1-fast-path = on</c>): a Kestrel
/// connection middleware that forwards plain HTTP/1.1 requests itself, from Kestrel's transport to
/// kept-alive backend sockets, without building an HttpContext, an HttpRequestMessage or an
/// HttpResponseMessage and without copying headers into dictionaries and out again. It routes,
/// selects, retries and counts through the same types as <see cref="HttpProxy"/>. At each request
/// boundary, a request it does not take (not plain, see <see cref="Http1Request"/>; to a pool that
/// speaks TLS or HTTP/2, or pins sessions by cookie; while requests are traced) is left unread and
/// the connection goes on in Kestrel and YARP from there.
/// </summary>
internal sealed class Http1FastPath : IDisposable
{
    private readonly HttpProxy _proxy;
    private readonly FrontendCounters _counters;
    private readonly FrontendSettings _settings;
    private readonly Http1Limits _limits;
    private readonly Http1BackendConnections _backends = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ClientConnection, byte> _open = new();
    private readonly Timer _deadlines;

    public Http1FastPath(FrontendSettings settings, HttpProxy proxy, FrontendCounters counters)
    {
        _settings = settings;
        _proxy = proxy;
        _counters = counters;
        _limits = new Http1Limits(settings.MaxRequestLineBytes, settings.MaxRequestHeaders, settings.MaxRequestHeaderBytes);
        // Kestrel checks its timeouts once a second; four times keeps a 500 ms request timeout near 500 ms.
        _deadlines = new Timer(static state => ((Http1FastPath)state!).EnforceDeadlines(), this, 250, 250);
    }

    /// <summary>
    /// A new connection to a backend: on one of Balancer's own event loops when
    /// <c>event-loop = on</c> (Linux), so that a response is read once it is there, and an idle
    /// connection's close is seen without a poll; else a .NET socket.
    /// </summary>
    private async ValueTask<Http1BackendConnection> ConnectAsync(System.Net.EndPoint address, EventLoop? clientLoop, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        if (_settings.EventLoop && (clientLoop ?? (EventLoop.TryNext(out var next) ? next : null)) is { } loop)
        {
            return new Http1BackendConnection(loop.Watch(await loop.ConnectAsync(address, connectTimeout, cancellationToken).ConfigureAwait(false)));
        }
        return new Http1BackendConnection(await BackendConnection.ConnectAsync(address, connectTimeout, cancellationToken).ConfigureAwait(false));
    }

    private void EnforceDeadlines()
    {
        var now = Environment.TickCount64;
        foreach (var (connection, _) in _open)
        {
            connection.EnforceDeadlines(now);
        }
    }

    public async Task RunAsync(ConnectionDelegate next, ConnectionContext connection)
    {
        // A connection that chose HTTP/2 (prior knowledge, see CleartextHttp2) is Kestrel's from the start.
        if (connection.Features.Get<ITlsApplicationProtocolFeature>() is { ApplicationProtocol.Length: > 0 } alpn && !alpn.ApplicationProtocol.Span.SequenceEqual("http/1.1"u8))
        {
            await next(connection).ConfigureAwait(false);
            return;
        }
        var client = new ClientConnection(this, connection);
        bool handOver;
        try
        {
            handOver = await client.ServeAsync().ConfigureAwait(false);
        }
        finally
        {
            client.Dispose();
        }
        if (handOver)
        {
            await next(connection).ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        _deadlines.Dispose();
        _backends.Dispose();
    }

    /// <summary>How one attempt at a backend ended.</summary>
    private enum Outcome
    {
        /// <summary>No connection could be made: nothing was sent.</summary>
        ConnectFailed,
        /// <summary>The request was sent (or partly) and no valid response head came back.</summary>
        NotAnswered,
        /// <summary>No response within the request timeout.</summary>
        TimedOut,
        /// <summary>A status the pool retries, dropped; the request is still whole in the client's buffer.</summary>
        Discarded,
        /// <summary>The response went to the client whole.</summary>
        Answered,
        /// <summary>The response started and then broke (the backend reset, or framed its body wrongly); the client connection ends.</summary>
        Broken,
        /// <summary>The client went away.</summary>
        ClientGone,
    }

    /// <summary>One client connection on the fast path: its requests one after the other.</summary>
    private sealed class ClientConnection : IDisposable
    {
        private const int MaxResponseHead = 64 * 1024;

        private readonly Http1FastPath _owner;
        private readonly ConnectionContext _connection;
        // The event loop the client connection is on (EventLoopTransport), where its backend connections are taken and made.
        private readonly EventLoop? _loop;
        private readonly PipeReader _input;
        private readonly PipeWriter _output;
        private readonly Http1Request _request = new();
        private readonly Http1Response _response = new();
        private readonly IPAddress? _peer;
        private readonly byte[]? _peerText;
        // The deadlines of the wait in progress on each side (Environment.TickCount64; 0: none),
        // enforced by the owner's sweep: a wait costs two writes, not a timer.
        private long _clientDeadline;
        private long _backendDeadline;
        private Http1BackendConnection? _backendWaiting;
        private volatile bool _clientTimedOut;
        private volatile bool _flushing;
        private volatile bool _backendTimedOut;
        private TimeSpan _requestTimeout;
        private byte[] _out = ArrayPool<byte>.Shared.Rent(8192);
        private volatile bool _closeRequested;
        // A request is being forwarded: a stop lets it finish (its body included) and ends the connection after it.
        private volatile bool _forwarding;
        // The request's bytes were given back to the client's pipe; its body went out as it came (it cannot be sent again).
        private bool _released;
        private bool _bodyStreamed;
        private CancellationTokenRegistration _closeRegistration;

        public ClientConnection(Http1FastPath owner, ConnectionContext connection)
        {
            _owner = owner;
            _connection = connection;
            _loop = (connection as EventLoopConnection)?.Loop;
            _input = connection.Transport.Input;
            _output = connection.Transport.Output;
            owner._open.TryAdd(this, 0);
            if (connection.RemoteEndPoint is IPEndPoint remote)
            {
                // Selection sees the address as HttpContext gives it on YARP's way (source-ip
                // sessions and hashes are the same whichever way a request goes); the forwarding
                // headers name an IPv4 client in IPv4, as ForwardingTransformer does.
                _peer = remote.Address;
                _peerText = Encoding.ASCII.GetBytes((_peer.IsIPv4MappedToIPv6 ? _peer.MapToIPv4() : _peer).ToString());
            }
            // Kestrel asks connections to finish when it stops: the one waiting for a request ends now,
            // the one forwarding ends after its response.
            if (connection.Features.Get<IConnectionLifetimeNotificationFeature>() is { } lifetime)
            {
                _closeRegistration = lifetime.ConnectionClosedRequested.Register(static state =>
                {
                    var self = (ClientConnection)state!;
                    self._closeRequested = true;
                    if (!self._forwarding)
                    {
                        self._input.CancelPendingRead();
                    }
                }, this);
            }
        }

        public void Dispose()
        {
            _closeRegistration.Dispose();
            _owner._open.TryRemove(this, out _);
            ArrayPool<byte>.Shared.Return(_out);
        }

        /// <summary>Serves requests until the connection ends (false) or one is Kestrel's (true).</summary>
        public async Task<bool> ServeAsync()
        {
            var settings = _owner._settings;
            var waitingSince = 0L;
            var arrived = false;
            while (true)
            {
                ReadResult result;
                var started = waitingSince != 0;
                var wait = started
                    ? settings.RequestHeadersTimeout - TimeSpan.FromMilliseconds(Environment.TickCount64 - waitingSince)
                    : settings.IdleTimeout;
                if (wait <= TimeSpan.Zero)
                {
                    return false;
                }
                // Awaited here, not through ReadClientAsync: this method lives as long as the
                // connection, so its wait costs no allocation a request (a nested async method's
                // would, with many connections waiting at once).
                Volatile.Write(ref _clientDeadline, Environment.TickCount64 + (long)wait.TotalMilliseconds);
                try
                {
                    result = await _input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException)
                {
                    return false;
                }
                finally
                {
                    Volatile.Write(ref _clientDeadline, 0);
                }
                var buffer = result.Buffer;
                if (result.IsCanceled && (_clientTimedOut || (_closeRequested && buffer.IsEmpty)))
                {
                    // Idle past idle-timeout, a head slower than request-headers-timeout, or Kestrel stopping.
                    _input.AdvanceTo(buffer.Start);
                    return false;
                }
                var verdict = _request.Read(buffer, _owner._limits, out var headLength);
                if (verdict == Http1HeadVerdict.Incomplete)
                {
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        _input.AdvanceTo(buffer.End);
                        return false;
                    }
                    if (waitingSince == 0)
                    {
                        waitingSince = Environment.TickCount64;
                    }
                    _input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }
                waitingSince = 0;
                Route? route = null;
                if (verdict == Http1HeadVerdict.NotPlain || !Takes(route = _owner._proxy.Routes.Match(_request)))
                {
                    // Nothing consumed: Kestrel parses this request from its first byte.
                    _input.AdvanceTo(buffer.Start);
                    return true;
                }
                if (!arrived)
                {
                    FirstRequestDeadline.Arrived(_connection);
                    arrived = true;
                }
                _owner._counters.AcceptOnFastPath();
                bool keepAlive;
                _forwarding = true;
                try
                {
                    keepAlive = await ForwardAsync(route, buffer, headLength, result.IsCompleted).ConfigureAwait(false);
                }
                finally
                {
                    _forwarding = false;
                    _owner._counters.Close();
                }
                if (!keepAlive || _closeRequested)
                {
                    return false;
                }
            }
        }

        /// <summary>True when the fast path forwards to <paramref name="route"/>: see the class's summary for what it leaves to YARP.</summary>
        private static bool Takes(Route route) =>
            route.Transformer is ForwardingTransformer
            && route.Pool.Transport.Protocol == BackendProtocol.Http1
            && route.Pool.Affinity?.Settings.Mode is null or AffinityMode.Header or AffinityMode.SourceIp
            && !Telemetry.BalancerTracing.Source.HasListeners();

        /// <summary>Reads from the client for at most <paramref name="wait"/>; past it the read returns cancelled with <see cref="_clientTimedOut"/> set.</summary>
        private ValueTask<ReadResult> ReadClientAsync(TimeSpan wait)
        {
            Volatile.Write(ref _clientDeadline, Environment.TickCount64 + (long)wait.TotalMilliseconds);
            var read = _input.ReadAsync();
            if (read.IsCompleted)
            {
                Volatile.Write(ref _clientDeadline, 0);
                return read;
            }
            return Awaited(this, read);

            static async ValueTask<ReadResult> Awaited(ClientConnection self, ValueTask<ReadResult> read)
            {
                try
                {
                    return await read.ConfigureAwait(false);
                }
                finally
                {
                    Volatile.Write(ref self._clientDeadline, 0);
                }
            }
        }

        /// <summary>
        /// Starts the request timeout of a read from a backend; past it the socket is aborted and
        /// <see cref="_backendTimedOut"/> set. The caller awaits the read itself (an async method
        /// between them would be one allocation more a request) and then calls <see cref="BackendWaitEnded"/>.
        /// </summary>
        private void BackendWaitStarts(Http1BackendConnection connection)
        {
            Volatile.Write(ref _backendWaiting, connection);
            Volatile.Write(ref _backendDeadline, Environment.TickCount64 + (long)_requestTimeout.TotalMilliseconds);
        }

        private void BackendWaitEnded()
        {
            Volatile.Write(ref _backendDeadline, 0);
            Volatile.Write(ref _backendWaiting, null);
        }

        /// <summary>Sends to a backend, for at most the request timeout when the socket's buffer is full (a backend that stops reading).</summary>
        private ValueTask SendToBackendAsync(Http1BackendConnection socket, ReadOnlyMemory<byte> bytes)
        {
            var send = socket.SendAsync(bytes);
            if (send.IsCompletedSuccessfully)
            {
                // A completed ValueTask is consumed once: what it sent is passed on, not the task.
                var sent = send.Result;
                if (sent == bytes.Length)
                {
                    return ValueTask.CompletedTask;
                }
                send = new ValueTask<int>(sent);
            }
            return Awaited(this, socket, send, bytes);

            [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
            static async ValueTask Awaited(ClientConnection self, Http1BackendConnection socket, ValueTask<int> send, ReadOnlyMemory<byte> bytes)
            {
                Volatile.Write(ref self._backendWaiting, socket);
                Volatile.Write(ref self._backendDeadline, Environment.TickCount64 + (long)self._requestTimeout.TotalMilliseconds);
                try
                {
                    while (true)
                    {
                        var sent = await send.ConfigureAwait(false);
                        bytes = bytes[sent..];
                        if (bytes.IsEmpty)
                        {
                            return;
                        }
                        Volatile.Write(ref self._backendDeadline, Environment.TickCount64 + (long)self._requestTimeout.TotalMilliseconds);
                        send = socket.SendAsync(bytes);
                    }
                }
                finally
                {
                    Volatile.Write(ref self._backendDeadline, 0);
                    Volatile.Write(ref self._backendWaiting, null);
                }
            }
        }

        /// <summary>Flushes to the client; a client that takes nothing for the request timeout is given up (false, as when it went away).</summary>
        private ValueTask<bool> FlushToClientAsync()
        {
            var flush = _output.FlushAsync();
            if (flush.IsCompletedSuccessfully)
            {
                var result = flush.Result;
                return ValueTask.FromResult(!result.IsCompleted && !result.IsCanceled);
            }
            return Awaited(this, flush);

            [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
            static async ValueTask<bool> Awaited(ClientConnection self, ValueTask<FlushResult> flush)
            {
                self._flushing = true;
                Volatile.Write(ref self._clientDeadline, Environment.TickCount64 + (long)self._requestTimeout.TotalMilliseconds);
                try
                {
                    var result = await flush.ConfigureAwait(false);
                    return !result.IsCompleted && !result.IsCanceled;
                }
                finally
                {
                    Volatile.Write(ref self._clientDeadline, 0);
                    self._flushing = false;
                }
            }
        }

        /// <summary>Called by the owner's sweep: ends a wait that is past its deadline.</summary>
        public void EnforceDeadlines(long now)
        {
            // Each deadline is claimed with a compare-and-swap, so a wait that ended meanwhile (and
            // cleared it) is left alone; the socket is read before its deadline, as it is set before it.
            var client = Volatile.Read(ref _clientDeadline);
            if (client != 0 && now >= client && Interlocked.CompareExchange(ref _clientDeadline, 0, client) == client)
            {
                _clientTimedOut = true;
                if (_flushing)
                {
                    _output.CancelPendingFlush();
                }
                else
                {
                    _input.CancelPendingRead();
                }
            }
            var socket = Volatile.Read(ref _backendWaiting);
            var backend = Volatile.Read(ref _backendDeadline);
            if (backend != 0 && now >= backend && socket is not null && Interlocked.CompareExchange(ref _backendDeadline, 0, backend) == backend
                && ReferenceEquals(Volatile.Read(ref _backendWaiting), socket))
            {
                _backendTimedOut = true;
                socket.Abort();
            }
        }

        /// <summary>
        /// One request: select, send, relay the answer, retrying as <see cref="HttpProxy"/> does.
        /// The request's bytes are released from the client's buffer here. True when the
        /// connection can take the next request.
        /// </summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<bool> ForwardAsync(Route route, ReadOnlySequence<byte> buffer, int headLength, bool clientDone)
        {
            var request = _request;
            var pool = route.Pool;
            var selection = await BackendSelection.StartAsync(pool, new RoutingRequest(_peer, request)).ConfigureAwait(false);
            var settings = selection.Snapshot.Settings;
            var retry = settings.Retry;
            _requestTimeout = route.RequestTimeout ?? settings.RequestTimeout;
            _backendTimedOut = false;
            var bodyLength = request.ContentLength;
            // The whole body already here: it stays in the buffer until answered, so it can be sent again.
            var bodyBuffered = buffer.Length - headLength >= bodyLength;
            var resendable = bodyLength == 0 && retry.Methods.Contains(request.Method);
            if (resendable)
            {
                pool.RetryBudget.CountRequest();
            }
            var discardedStatus = 0;
            _released = false;
            _bodyStreamed = false;
            var forwarding = (ForwardingTransformer)route.Transformer;
            var head = ReadOnlyMemory<byte>.Empty;
            var hostNamesBackend = false;
            try
            {
                while (true)
                {
                    var lease = selection.Next();
                    if (lease.Backend is not { } backend)
                    {
                        return await AnswerErrorAsync(selection.Attempts == 0 ? 503 : discardedStatus != 0 ? discardedStatus : 502, pool.Name,
                            noBackend: selection.Attempts == 0, buffer, headLength, bodyBuffered).ConfigureAwait(false);
                    }
                    var discards = resendable && !retry.OnStatus.IsEmpty && selection.HasAnotherBackend && pool.RetryBudget.HasRoom(retry);
                    // As HttpProxy's: only the last attempt's dropped status is the one a client may get.
                    discardedStatus = 0;
                    Outcome outcome;
                    int status;
                    try
                    {
                        // The head is the same for every attempt, unless its Host names the backend.
                        if (head.IsEmpty || hostNamesBackend)
                        {
                            head = BuildRequestHead(forwarding, backend, out hostNamesBackend);
                        }
                        (outcome, status) = await ExchangeAsync(backend, head, buffer, headLength, bodyBuffered,
                            settings.ConnectTimeout, discards ? retry.OnStatus : default, lease, forwarding).ConfigureAwait(false);
                    }
                    catch
                    {
                        lease.Complete(BackendOutcome.Abandoned);
                        throw;
                    }
                    switch (outcome)
                    {
                        case Outcome.Answered:
                            lease.Complete(status >= 500 && settings.Passive.Count5xx ? BackendOutcome.Failed : BackendOutcome.Success, status);
                            return !request.Close && !clientDone;
                        case Outcome.Discarded:
                            lease.CompleteDropped(status, failed: settings.Passive.Count5xx);
                            pool.RetryBudget.Take();
                            discardedStatus = status;
                            continue;
                        case Outcome.ConnectFailed:
                            lease.Complete(BackendOutcome.ConnectFailed);
                            if (selection.CanRetry)
                            {
                                continue;
                            }
                            break;
                        case Outcome.NotAnswered:
                            lease.Complete(BackendOutcome.Failed);
                            if (resendable && retry.OnReset && selection.CanRetry && pool.RetryBudget.TryTake(retry))
                            {
                                continue;
                            }
                            break;
                        case Outcome.TimedOut:
                            lease.Complete(BackendOutcome.Failed);
                            return await AnswerErrorAsync(504, pool.Name, noBackend: false, buffer, headLength, bodyBuffered).ConfigureAwait(false);
                        case Outcome.Broken:
                            lease.Complete(BackendOutcome.Failed);
                            // What the backend sent whole goes out, then the connection ends: short of
                            // its length or of its last chunk, the response reads as cut off.
                            await FlushQuietlyAsync().ConfigureAwait(false);
                            return false;
                        default:
                            lease.Complete(BackendOutcome.Abandoned);
                            return false;
                    }
                    return await AnswerErrorAsync(502, pool.Name, noBackend: false, buffer, headLength, bodyBuffered).ConfigureAwait(false);
                }
            }
            finally
            {
                Release(buffer, headLength, bodyBuffered);
            }
        }

        /// <summary>
        /// The head the backend gets, built once for every attempt: the request line (its path
        /// rewritten by the route), Host, the client's headers without those about this hop, the
        /// forwarding headers, the route's own. Host is the client's (<c>preserve-host</c>) or the backend's address.
        /// </summary>
        private ReadOnlyMemory<byte> BuildRequestHead(ForwardingTransformer forwarding, Model.Backend backend, out bool hostNamesBackend)
        {
            var request = _request;
            var requestHeaders = forwarding.RequestHeaders;
            string? routeHost = null;
            // An upper bound: the head twice (X-Forwarded-Host repeats Host, X-Forwarded-For the
            // chain), a space more a line, the forwarding headers, the route's.
            var estimate = 2 * request.Head.Length + 2 * request.LineCount + 512 + (_peerText?.Length ?? 0);
            foreach (var (name, value) in requestHeaders.Set)
            {
                estimate += name.Length + value.Length + 4;
                if (name.Equals("Host", StringComparison.OrdinalIgnoreCase))
                {
                    routeHost = value;
                }
            }
            hostNamesBackend = routeHost is null && !forwarding.PreserveHost;
            var backendHost = routeHost ?? (hostNamesBackend ? backend.Address.ToString() : null);
            estimate += backendHost?.Length ?? 0;
            var rewritten = forwarding.RewritesPath && forwarding.Rewrite(request.Path) is { } path ? new Microsoft.AspNetCore.Http.PathString(path).ToUriComponent() : null;
            estimate += rewritten?.Length ?? 0;
            if (_out.Length < estimate)
            {
                ArrayPool<byte>.Shared.Return(_out);
                _out = ArrayPool<byte>.Shared.Rent(estimate);
            }
            var writer = new HeadWriter(_out);
            var head = request.Head.Span;
            writer.Write(head[..(request.TargetStart)]);
            if (rewritten is null)
            {
                writer.Write(request.Target);
            }
            else
            {
                writer.WriteAscii(rewritten);
                writer.Write(request.Target[request.PathLength..]);
            }
            writer.Write(" HTTP/1.1\r\n"u8);
            writer.Write("Host: "u8);
            if (backendHost is null)
            {
                writer.Write(request.Host);
            }
            else
            {
                writer.WriteAscii(backendHost);
            }
            writer.Write("\r\n"u8);
            var mode = forwarding.Mode;
            var trusted = mode == ForwardedHeadersMode.Append && _peer is not null && forwarding.IsTrusted(_peer);
            var chainFromTrustedProxy = false;
            var keepProto = false;
            var keepHost = false;
            foreach (ref readonly var line in request.Lines)
            {
                switch (line.Role)
                {
                    case Http1Request.HeaderRole.Host or Http1Request.HeaderRole.Hop:
                        continue;
                    case Http1Request.HeaderRole.ForwardedFor when mode != ForwardedHeadersMode.Off:
                        chainFromTrustedProxy |= trusted;
                        continue;
                    case Http1Request.HeaderRole.ForwardedProto when trusted:
                        keepProto = true;
                        break;
                    case Http1Request.HeaderRole.ForwardedHost when trusted:
                        keepHost = true;
                        break;
                    case >= Http1Request.HeaderRole.Forwarding when mode != ForwardedHeadersMode.Off && !trusted:
                        continue;
                }
                var name = request.Name(line);
                if (!requestHeaders.IsEmpty && requestHeaders.Changes(name))
                {
                    continue;
                }
                writer.Write(name);
                writer.Write(": "u8);
                writer.Write(request.Value(line));
                writer.Write("\r\n"u8);
            }
            if (mode != ForwardedHeadersMode.Off)
            {
                // What the route sets or removes of these wins, as on YARP's way.
                var routeNames = !requestHeaders.IsEmpty;
                if (_peerText is not null && !(routeNames && requestHeaders.Changes("X-Forwarded-For"u8)))
                {
                    writer.Write("X-Forwarded-For: "u8);
                    if (chainFromTrustedProxy)
                    {
                        // From a trusted proxy: its chain (every X-Forwarded-For line, joined), then the client.
                        var first = true;
                        foreach (ref readonly var line in request.Lines)
                        {
                            if (line.Role == Http1Request.HeaderRole.ForwardedFor)
                            {
                                if (!first)
                                {
                                    writer.Write(","u8);
                                }
                                writer.Write(request.Value(line));
                                first = false;
                            }
                        }
                        writer.Write(", "u8);
                    }
                    writer.Write(_peerText);
                    writer.Write("\r\n"u8);
                }
                if (!keepProto && !(routeNames && requestHeaders.Changes("X-Forwarded-Proto"u8)))
                {
                    writer.Write("X-Forwarded-Proto: http\r\n"u8);
                }
                if (!keepHost && !(routeNames && requestHeaders.Changes("X-Forwarded-Host"u8)))
                {
                    writer.Write("X-Forwarded-Host: "u8);
                    writer.Write(request.Host);
                    writer.Write("\r\n"u8);
                }
            }
            foreach (var (name, value) in requestHeaders.Set)
            {
                if (ReferenceEquals(value, routeHost) && name.Equals("Host", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }
                writer.WriteAscii(name);
                writer.Write(": "u8);
                writer.WriteAscii(value);
                writer.Write("\r\n"u8);
            }
            writer.Write("\r\n"u8);
            return _out.AsMemory(0, writer.Position);
        }

        /// <summary>One attempt: a connection, the request, the response head, and (unless dropped) the response relayed.</summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<(Outcome Outcome, int Status)> ExchangeAsync(Model.Backend backend, ReadOnlyMemory<byte> head,
            ReadOnlySequence<byte> buffer, int headLength, bool bodyBuffered, TimeSpan connectTimeout,
            System.Collections.Immutable.ImmutableArray<int> discards, BackendLease lease, ForwardingTransformer forwarding)
        {
            var backends = _owner._backends;
            var address = backend.EndPoint;
            var connection = backends.TakeIdle(address, _loop?.Index ?? -1);
            for (var fresh = 0; ; fresh++)
            {
                if (connection is null)
                {
                    try
                    {
                        connection = await _owner.ConnectAsync(address, _loop, connectTimeout, _connection.ConnectionClosed).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is SocketException or OperationCanceledException)
                    {
                        return (_connection.ConnectionClosed.IsCancellationRequested ? Outcome.ClientGone : Outcome.ConnectFailed, 0);
                    }
                }
                SendResult result;
                try
                {
                    result = await SendAndReadHeadAsync(connection, head, buffer, headLength, bodyBuffered).ConfigureAwait(false);
                }
                catch
                {
                    connection.Dispose();
                    throw;
                }
                if (result == SendResult.Stale && fresh == 0 && connection.Reused)
                {
                    // A kept-alive connection the backend had closed: nothing of this request was
                    // taken, so it goes again on a new one, as HttpClient does.
                    connection.Dispose();
                    connection = null;
                    continue;
                }
                if (result != SendResult.HeadRead)
                {
                    connection.Dispose();
                    return (result switch
                    {
                        SendResult.TimedOut => Outcome.TimedOut,
                        SendResult.ClientGone => Outcome.ClientGone,
                        _ => Outcome.NotAnswered,
                    }, 0);
                }
                break;
            }
            var response = _response;
            var status = response.Status;
            if (!discards.IsDefaultOrEmpty && discards.Contains(status))
            {
                connection.Dispose();
                return (Outcome.Discarded, status);
            }
            var outcome = Outcome.Broken;
            try
            {
                // Answered: the request's bytes are no longer needed.
                Release(buffer, headLength, bodyBuffered);
                if (lease.PinsSession)
                {
                    // Before the response starts, as YARP's path does: under write = majority, the
                    // client learns of its session only once a majority holds it.
                    await lease.PinSessionAsync().ConfigureAwait(false);
                }
                outcome = await RelayResponseAsync(connection, forwarding).ConfigureAwait(false);
            }
            finally
            {
                // Used again only when the response ended exactly where its framing said: a byte
                // more would be read as the next request's answer.
                if (outcome == Outcome.Answered && response.Reusable && connection.Start == connection.End && !_backendTimedOut)
                {
                    backends.GiveBack(address, _loop?.Index ?? -1, connection);
                }
                else
                {
                    connection.Dispose();
                }
            }
            return (outcome, status);
        }

        private enum SendResult
        {
            HeadRead,
            /// <summary>A kept-alive connection failed before any byte came back, with nothing of the request taken from the client.</summary>
            Stale,
            Failed,
            TimedOut,
            ClientGone,
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<SendResult> SendAndReadHeadAsync(Http1BackendConnection connection, ReadOnlyMemory<byte> head,
            ReadOnlySequence<byte> buffer, int headLength, bool bodyBuffered)
        {
            var request = _request;
            var socket = connection;
            var bodyLength = request.ContentLength;
            try
            {
                if (bodyBuffered && bodyLength > 0 && head.Length + bodyLength <= 64 * 1024)
                {
                    // Head and body in one write: one system call for a small request.
                    var whole = ArrayPool<byte>.Shared.Rent(head.Length + (int)bodyLength);
                    try
                    {
                        head.Span.CopyTo(whole);
                        buffer.Slice(headLength, bodyLength).CopyTo(whole.AsSpan(head.Length));
                        await SendToBackendAsync(socket, whole.AsMemory(0, head.Length + (int)bodyLength)).ConfigureAwait(false);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(whole);
                    }
                    bodyLength = 0;
                }
                else
                {
                    await SendToBackendAsync(socket, head).ConfigureAwait(false);
                }
                if (bodyLength > 0)
                {
                    if (bodyBuffered)
                    {
                        foreach (var segment in buffer.Slice(headLength, bodyLength))
                        {
                            await SendToBackendAsync(socket, segment).ConfigureAwait(false);
                        }
                    }
                    else
                    {
                        if (!await SendBodyAsync(socket, buffer, headLength, bodyLength).ConfigureAwait(false))
                        {
                            return SendResult.ClientGone;
                        }
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
                return !_bodyStreamed && connection.Reused ? SendResult.Stale : SendResult.Failed;
            }
            var readAny = false;
            while (true)
            {
                while (true)
                {
                    var parsed = _response.Read(connection.Buffer.AsSpan(connection.Start, connection.End - connection.Start), request.IsHead);
                    if (parsed == Http1Response.Verdict.Invalid)
                    {
                        return SendResult.Failed;
                    }
                    if (parsed == Http1Response.Verdict.Incomplete)
                    {
                        break;
                    }
                    connection.Start += _response.HeadLength;
                    if (!_response.IsInterim)
                    {
                        return SendResult.HeadRead;
                    }
                    // 100 Continue, 102, 103 Early Hints: not passed on (YARP's path does not either); the answer follows.
                }
                if (!connection.MakeRoom(1024, MaxResponseHead))
                {
                    return SendResult.Failed;
                }
                int read;
                BackendWaitStarts(connection);
                try
                {
                    read = await connection.ReceiveAsync(connection.Buffer.AsMemory(connection.End)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return _backendTimedOut ? SendResult.TimedOut
                        : !_bodyStreamed && connection.Reused && !readAny ? SendResult.Stale
                        : SendResult.Failed;
                }
                finally
                {
                    BackendWaitEnded();
                }
                if (read == 0)
                {
                    return !_bodyStreamed && connection.Reused && !readAny ? SendResult.Stale : SendResult.Failed;
                }
                readAny = true;
                connection.End += read;
            }
        }

        /// <summary>Streams a body that had not all arrived: what is buffered, then the rest as it comes. False when the client went away.</summary>
        private async Task<bool> SendBodyAsync(Http1BackendConnection socket, ReadOnlySequence<byte> buffer, int headLength, long length)
        {
            var available = buffer.Slice(headLength);
            foreach (var segment in available)
            {
                await SendToBackendAsync(socket, segment).ConfigureAwait(false);
            }
            length -= available.Length;
            _released = true;
            _bodyStreamed = true;
            _input.AdvanceTo(available.End);
            var settings = _owner._settings;
            var started = Environment.TickCount64;
            var received = 0L;
            while (length > 0)
            {
                ReadResult result;
                try
                {
                    // min-request-body-rate as Kestrel applies it: after a 5 s grace, the body must
                    // have come at that rate on average; a read waits until the average would fall below it.
                    var wait = settings.IdleTimeout;
                    if (settings.MinRequestBodyBytesPerSecond > 0)
                    {
                        var due = started + Math.Max(5000, received * 1000 / settings.MinRequestBodyBytesPerSecond);
                        wait = TimeSpan.FromMilliseconds(due - Environment.TickCount64);
                        if (wait <= TimeSpan.Zero)
                        {
                            return false;
                        }
                    }
                    result = await ReadClientAsync(wait).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException)
                {
                    return false;
                }
                if (result.IsCanceled)
                {
                    _input.AdvanceTo(result.Buffer.Start);
                    if (_clientTimedOut)
                    {
                        // Slower than min-request-body-rate, or idle past idle-timeout.
                        return false;
                    }
                    // Kestrel stopping: the request finishes first.
                    continue;
                }
                var body = result.Buffer.Slice(0, Math.Min(length, result.Buffer.Length));
                foreach (var segment in body)
                {
                    await SendToBackendAsync(socket, segment).ConfigureAwait(false);
                }
                length -= body.Length;
                received += body.Length;
                _input.AdvanceTo(body.End);
                if (length > 0 && (result.IsCompleted || result.IsCanceled))
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>Writes the response head and relays its body as the backend frames it.</summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<Outcome> RelayResponseAsync(Http1BackendConnection connection, ForwardingTransformer forwarding)
        {
            var response = _response;
            var closing = _request.Close || _closeRequested;
            var span = _output.GetSpan(response.MaxWrittenHeadLength(forwarding.ResponseHeaders));
            var writer = new HeadWriter(span);
            response.WriteHead(ref writer, connection.Buffer.AsSpan(connection.Start - response.HeadLength, response.HeadLength), forwarding.ResponseHeaders, closing);
            _output.Advance(writer.Position);
            try
            {
                var outcome = response.Framing switch
                {
                    Http1Response.BodyFraming.None => Outcome.Answered,
                    Http1Response.BodyFraming.Length => await RelayLengthAsync(connection, response.ContentLength).ConfigureAwait(false),
                    Http1Response.BodyFraming.Chunked => await RelayChunksAsync(connection).ConfigureAwait(false),
                    _ => await RelayUntilCloseAsync(connection).ConfigureAwait(false),
                };
                if (outcome != Outcome.Answered)
                {
                    return outcome;
                }
                return await FlushToClientAsync().ConfigureAwait(false) ? Outcome.Answered : Outcome.ClientGone;
            }
            catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
            {
                return Outcome.ClientGone;
            }
        }

        private async ValueTask FlushQuietlyAsync()
        {
            try
            {
                await FlushToClientAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
            {
            }
        }

        /// <summary>Gives the request's bytes back to the client's pipe, once: up to the body's end when it was all there, else what was read (the connection then ends).</summary>
        private void Release(in ReadOnlySequence<byte> buffer, int headLength, bool bodyBuffered)
        {
            if (_released)
            {
                return;
            }
            _released = true;
            _input.AdvanceTo(bodyBuffered ? buffer.GetPosition(headLength + _request.ContentLength) : buffer.End);
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<Outcome> RelayLengthAsync(Http1BackendConnection connection, long remaining)
        {
            while (true)
            {
                var available = (int)Math.Min(remaining, connection.End - connection.Start);
                if (available > 0)
                {
                    _output.Write(connection.Buffer.AsSpan(connection.Start, available));
                    connection.Start += available;
                    remaining -= available;
                }
                if (remaining == 0)
                {
                    return Outcome.Answered;
                }
                switch (await FlushThenReceiveAsync(connection).ConfigureAwait(false))
                {
                    case Received.Data:
                        continue;
                    case Received.ClientGone:
                        return Outcome.ClientGone;
                    default:
                        return Outcome.Broken;
                }
            }
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<Outcome> RelayUntilCloseAsync(Http1BackendConnection connection)
        {
            // Framed by the end of the connection: passed on in chunks, so the client's connection stays open.
            while (true)
            {
                var available = connection.End - connection.Start;
                if (available > 0)
                {
                    WriteChunk(connection.Buffer.AsSpan(connection.Start, available));
                    connection.Start = connection.End;
                }
                switch (await FlushThenReceiveAsync(connection).ConfigureAwait(false))
                {
                    case Received.Data:
                        continue;
                    case Received.End:
                        _output.Write("0\r\n\r\n"u8);
                        return Outcome.Answered;
                    case Received.ClientGone:
                        return Outcome.ClientGone;
                    default:
                        // A reset or a timeout is not the end of the body: the client must not take it for whole.
                        return Outcome.Broken;
                }
            }
        }

        private void WriteChunk(ReadOnlySpan<byte> data)
        {
            WriteChunkSize(data.Length);
            _output.Write(data);
            _output.Write("\r\n"u8);
        }

        private void WriteChunkSize(long size)
        {
            Span<byte> text = stackalloc byte[20];
            Utf8Formatter.TryFormat((ulong)size, text, out var written, new StandardFormat('x'));
            _output.Write(text[..written]);
            _output.Write("\r\n"u8);
        }

        /// <summary>Relays a chunked body, each chunk's size checked and written anew (extensions and trailers dropped).</summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<Outcome> RelayChunksAsync(Http1BackendConnection connection)
        {
            while (true)
            {
                // The size line.
                int lineEnd;
                while ((lineEnd = connection.Buffer.AsSpan(connection.Start, connection.End - connection.Start).IndexOf("\r\n"u8)) < 0)
                {
                    if (connection.End - connection.Start > 1024)
                    {
                        return Outcome.Broken;
                    }
                    if (await FlushThenReceiveAsync(connection).ConfigureAwait(false) is var received and not Received.Data)
                    {
                        return Failure(received);
                    }
                }
                if (!Http1Response.TryParseChunkSize(connection.Buffer.AsSpan(connection.Start, lineEnd), out var size))
                {
                    return Outcome.Broken;
                }
                connection.Start += lineEnd + 2;
                if (size == 0)
                {
                    // Trailers, up to the empty line: read and dropped (Kestrel sends none over HTTP/1.1 either).
                    while (true)
                    {
                        while ((lineEnd = connection.Buffer.AsSpan(connection.Start, connection.End - connection.Start).IndexOf("\r\n"u8)) < 0)
                        {
                            if (connection.End - connection.Start > 8192)
                            {
                                return Outcome.Broken;
                            }
                            if (await FlushThenReceiveAsync(connection).ConfigureAwait(false) is var received and not Received.Data)
                            {
                                return Failure(received);
                            }
                        }
                        var line = connection.Buffer.AsSpan(connection.Start, lineEnd);
                        connection.Start += lineEnd + 2;
                        if (line.IsEmpty)
                        {
                            _output.Write("0\r\n\r\n"u8);
                            return Outcome.Answered;
                        }
                        if (line.IndexOfAnyExcept(Http1Request.TextBytes) >= 0)
                        {
                            return Outcome.Broken;
                        }
                    }
                }
                WriteChunkSize(size);
                var remaining = size;
                while (remaining > 0)
                {
                    var available = (int)Math.Min(remaining, connection.End - connection.Start);
                    if (available > 0)
                    {
                        _output.Write(connection.Buffer.AsSpan(connection.Start, available));
                        connection.Start += available;
                        remaining -= available;
                        continue;
                    }
                    if (await FlushThenReceiveAsync(connection).ConfigureAwait(false) is var received and not Received.Data)
                    {
                        return Failure(received);
                    }
                }
                // The data's CRLF.
                while (connection.End - connection.Start < 2)
                {
                    if (await FlushThenReceiveAsync(connection).ConfigureAwait(false) is var received and not Received.Data)
                    {
                        return Failure(received);
                    }
                }
                if (connection.Buffer[connection.Start] != (byte)'\r' || connection.Buffer[connection.Start + 1] != (byte)'\n')
                {
                    return Outcome.Broken;
                }
                connection.Start += 2;
                _output.Write("\r\n"u8);
            }
        }

        /// <summary>What a read that gave no more of the body means for the response.</summary>
        private static Outcome Failure(Received received) => received == Received.ClientGone ? Outcome.ClientGone : Outcome.Broken;

        /// <summary>What a read of more response bytes gave.</summary>
        private enum Received
        {
            Data,
            /// <summary>The backend closed its side: the end of a body framed by the close.</summary>
            End,
            /// <summary>A reset, the request timeout, or a response longer than the buffer can hold unread.</summary>
            Failed,
            ClientGone,
        }

        /// <summary>
        /// Passes on what was written so far (so a stream of small chunks reaches the client as it
        /// comes, and a client that reads slowly slows the backend down), then reads more of the response.
        /// </summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<Received> FlushThenReceiveAsync(Http1BackendConnection connection)
        {
            if (_output.UnflushedBytes > 0 && !await FlushToClientAsync().ConfigureAwait(false))
            {
                return Received.ClientGone;
            }
            if (connection.Start == connection.End)
            {
                connection.Start = connection.End = 0;
            }
            if (!connection.MakeRoom(1, MaxResponseHead))
            {
                return Received.Failed;
            }
            BackendWaitStarts(connection);
            try
            {
                var read = await connection.ReceiveAsync(connection.Buffer.AsMemory(connection.End)).ConfigureAwait(false);
                connection.End += read;
                return read > 0 ? Received.Data : Received.End;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return Received.Failed;
            }
            finally
            {
                BackendWaitEnded();
            }
        }

        /// <summary>
        /// Balancer's own answer (no backend, none answered, timed out), as <see cref="HttpProxy"/>
        /// words it (without the text to a HEAD). When the request's body was not all read, the connection ends with it.
        /// </summary>
        private async Task<bool> AnswerErrorAsync(int status, string pool, bool noBackend, ReadOnlySequence<byte> buffer, int headLength, bool bodyBuffered)
        {
            var keepAlive = !_request.Close && !_closeRequested && bodyBuffered && !_bodyStreamed;
            Release(buffer, headLength, bodyBuffered);
            var body = Encoding.UTF8.GetBytes(HttpProxy.ErrorText(status, pool, noBackend));
            var span = _output.GetSpan(256 + body.Length);
            var writer = new HeadWriter(span);
            writer.Write("HTTP/1.1 "u8);
            writer.WriteNumber(status);
            writer.Write(" "u8);
            writer.WriteAscii(Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status));
            writer.Write("\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"u8);
            writer.Write(Http1Date.Header);
            writer.Write("Content-Length: "u8);
            writer.WriteNumber(body.Length);
            writer.Write(keepAlive ? "\r\n\r\n"u8 : "\r\nConnection: close\r\n\r\n"u8);
            if (!_request.IsHead)
            {
                writer.Write(body);
            }
            _output.Advance(writer.Position);
            try
            {
                return await FlushToClientAsync().ConfigureAwait(false) && keepAlive;
            }
            catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
            {
                return false;
            }
        }
    }
}

/// <summary>Writes a head into a span sized for it.</summary>
internal ref struct HeadWriter
{
    private readonly Span<byte> _span;

    public HeadWriter(Span<byte> span)
    {
        _span = span;
        Position = 0;
    }

    public int Position { get; private set; }

    public void Write(scoped ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_span[Position..]);
        Position += bytes.Length;
    }

    public void WriteAscii(string text)
    {
        Position += Encoding.ASCII.GetBytes(text, _span[Position..]);
    }

    public void WriteNumber(long value)
    {
        Utf8Formatter.TryFormat(value, _span[Position..], out var written);
        Position += written;
    }
}

/// <summary>The Date header, made once a second.</summary>
internal static class Http1Date
{
    private static (long Second, byte[] Header) _current = (-1, []);

    /// <summary><c>Date: ...\r\n</c> for now.</summary>
    public static ReadOnlySpan<byte> Header
    {
        get
        {
            var now = DateTimeOffset.UtcNow;
            var second = now.ToUnixTimeSeconds();
            var current = _current;
            if (current.Second != second)
            {
                current = (second, Encoding.ASCII.GetBytes("Date: " + now.ToString("r", System.Globalization.CultureInfo.InvariantCulture) + "\r\n"));
                _current = current;
            }
            return current.Header;
        }
    }
}
