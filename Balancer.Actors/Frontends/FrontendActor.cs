using System.Net;
using Akka.Actor;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Frontends.Http;
using Balancer.Frontends.Tcp;
using Balancer.Routing;

namespace Balancer.Frontends;

/// <summary>
/// Owns the listeners of one frontend: opens them when started, closes them when stopped (or,
/// when the node stops, on <see cref="FrontendOwner.Drain"/>: no new connection, and those in
/// flight may finish within the drain timeout). Binding
/// happens off the actor's thread; the outcome comes back as a message and is announced on the
/// EventStream as <see cref="FrontendStarted"/> or <see cref="FrontendFailed"/>. A failed bind is
/// retried with backoff (up to 30 s apart) for as long as the frontend should be open.
/// </summary>
internal sealed class FrontendActor : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);

    private FrontendSettings _settings;
    private readonly PoolRegistry _pools;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly FrontendCounters _counters;
    private readonly DataPlane _dataPlane;
    private IFrontendServer? _server;
    // True once _server listens on every address: only such listeners outlive this actor.
    private bool _listening;
    private int _failures;

    public FrontendActor(FrontendSettings settings, PoolRegistry pools)
    {
        _settings = settings;
        _pools = pools;
        _dataPlane = BalancerExtension.Get(Context.System).DataPlane;
        // Restarted after a reload changed it in place: the settings it runs now, not those it was made with.
        _settings = _dataPlane.Settings.Frontends.FirstOrDefault(f => f.Name == settings.Name) ?? settings;
        _counters = _dataPlane.FrontendCounters[settings.Name];

        Receive<Started>(started =>
        {
            var endpoints = string.Join(", ", started.EndPoints);
            _log.Info("{0} frontend {1} listening on {2} → pool {3}", _settings.Mode.ToString().ToLowerInvariant(), _settings.Name, endpoints, _settings.Pool);
            _counters.Listening = started.EndPoints;
            _listening = true;
            Context.System.EventStream.Publish(new FrontendStarted(_settings.Name, started.EndPoints));
            _failures = 0;
        });
        Receive<Retry>(_ => Open());
        Receive<Reconfigure>(reconfigure =>
        {
            try
            {
                _server?.Reconfigure(reconfigure.Settings, _pools);
                _settings = reconfigure.Settings;
                _log.Info("frontend {0}: reconfigured in place → pool {1}, {2} route(s)", _settings.Name, _settings.Pool, _settings.Routes.Length);
            }
            catch (Exception e)
            {
                // A later reload already removed what this one named: the next reload sets it right.
                _log.Error("frontend {0}: could not apply the new configuration in place: {1}", _settings.Name, e.Message);
            }
            Sender.Tell(Akka.Done.Instance);
        });
        Receive<FrontendOwner.Drain>(drain =>
        {
            Timers.Cancel("retry");
            var server = _server;
            _server = null;
            _listening = false;
            _counters.Listening = [];
            if (server is null)
            {
                Sender.Tell(FrontendOwner.Drained.Instance);
                return;
            }
            _log.Info("frontend {0}: no longer accepting; letting {1} open connection(s) finish (at most {2:0.#} s)", _settings.Name, _counters.Open, drain.Timeout.TotalSeconds);
            var name = _settings.Name;
            var log = _log;
            var parent = Context.Parent;
            var self = Self;
            server.StopAsync(drain.Timeout, () => parent.Tell(Unbound.Instance, self))
                .ContinueWith(_ => server.DisposeAsync().AsTask(), TaskScheduler.Default).Unwrap()
                .ContinueWith(_ =>
                {
                    log.Info("frontend {0} closed", name);
                    return (object)FrontendOwner.Drained.Instance;
                }, TaskScheduler.Default)
                .PipeTo(Sender);
        });
        Receive<Status.Failure>(failure =>
        {
            var reason = failure.Cause is AggregateException { InnerException: { } inner } ? inner.Message : failure.Cause.Message;
            // Keep trying: the address may come (a VIP the on-active hook is still adding) or be
            // freed (a previous owner still closing). `run` gives up at start on the first failure.
            var delay = TimeSpan.FromMilliseconds(Math.Min(MaxRetryDelay.TotalMilliseconds, 500 * Math.Pow(2, Math.Min(_failures, 10))));
            _failures++;
            _log.Error("frontend {0} could not listen on {1}: {2}; trying again in {3:0.#} s", _settings.Name, string.Join(", ", _settings.Bind), reason, delay.TotalSeconds);
            Context.System.EventStream.Publish(new FrontendFailed(_settings.Name, reason));
            var failed = _server;
            _server = null;
            _listening = false;
            _ = failed?.DisposeAsync().AsTask().ContinueWith(_ => { }, TaskScheduler.Default);
            Timers.StartSingleTimer("retry", Retry.Instance, delay);
        });
    }

    public static Props Props(FrontendSettings settings, PoolRegistry pools) =>
        Akka.Actor.Props.Create(() => new FrontendActor(settings, pools));

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        // Said once per process: listeners taken over from an earlier incarnation were warned about.
        if (_settings.ReusePort && !_dataPlane.ServingUnowned.Contains(_settings.Name) && ListenSockets.MigratesQueuedConnections() == false)
        {
            _log.Warning("frontend {0}: reuse-port is on but net.ipv4.tcp_migrate_req = 0: connections queued on a node that dies are reset; set it to 1 (Linux ≥ 5.14)", _settings.Name);
        }
        Open();
    }

    private void Open()
    {
        // Listeners an earlier incarnation of this node kept serving: taken over as they are, never bound twice.
        if (_dataPlane.Adopt(_settings.Name) is { } serving)
        {
            // A reload may have come while no incarnation owned them: its routes and pool apply from now on.
            try
            {
                serving.Reconfigure(_settings, _pools);
            }
            catch (Exception e)
            {
                _log.Error("frontend {0}: could not apply the running configuration to the listeners taken over: {1}", _settings.Name, e.Message);
            }
            _server = serving;
            _log.Info("frontend {0}: taking over the listeners that kept serving while this node rejoined", _settings.Name);
            Self.Tell(new Started(serving.BoundEndPoints));
            return;
        }
        var pool = _pools.Find(_settings.Pool)
            ?? throw new InvalidOperationException($"frontend {_settings.Name}: pool {_settings.Pool} is not registered");
        var log = _dataPlane.Log($"balancer.frontend.{_settings.Name}");
        _server = _settings.Mode == FrontendMode.Http
            ? new HttpFrontendServer(_settings, pool, _pools, _counters, _dataPlane)
            : new TcpFrontendServer(_settings, pool, _counters, log, _pools);
        var server = _server;
        // Run off the actor thread: a bind that fails at once must come back as a message too.
        Task.Run(() => server.StartAsync(CancellationToken.None))
            .ContinueWith(t => t.IsCompletedSuccessfully ? (object)new Started(server.BoundEndPoints) : new Status.Failure(t.Exception!), TaskScheduler.Default)
            .PipeTo(Self);
    }

    protected override void PostStop()
    {
        var server = _server;
        _server = null;
        // The cluster removed this node: the listeners outlive this actor, and the next incarnation's take them over.
        if (server is not null && _listening && _dataPlane.TryKeepServing(_settings.Name, server))
        {
            return;
        }
        _counters.Listening = [];
        if (server is null)
        {
            return;
        }
        // Stopped without a drain (the owner drains before it stops a generation; this is an actor
        // restart or a system that went without its coordinated shutdown): the listeners close in
        // the background, as a PostStop must not hold a dispatcher thread.
        var name = _settings.Name;
        var log = _log;
        _ = Task.Run(async () =>
        {
            try
            {
                await server.StopAsync(FrontendOwner.CloseGrace).WaitAsync(FrontendOwner.CloseGrace + TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                log.Warning("frontend {0}: error while closing: {1}", name, e.GetBaseException().Message);
            }
            finally
            {
                await server.DisposeAsync().ConfigureAwait(false);
                log.Info("frontend {0} closed", name);
            }
        });
    }

    private sealed record Started(IReadOnlyList<IPEndPoint> EndPoints);

    /// <summary>A reload changed only what applies per request or connection: the listeners stay.</summary>
    internal sealed record Reconfigure(FrontendSettings Settings);

    /// <summary>Told to the parent while draining, once the listeners are closed: their addresses are free for a successor.</summary>
    internal sealed class Unbound
    {
        public static readonly Unbound Instance = new();
        private Unbound() { }
    }

    private sealed class Retry
    {
        public static readonly Retry Instance = new();
        private Retry() { }
    }
}

/// <summary>Published when a frontend listens on all its addresses.</summary>
public sealed record FrontendStarted(string Frontend, IReadOnlyList<IPEndPoint> EndPoints);

/// <summary>Published when a frontend could not open its listeners.</summary>
public sealed record FrontendFailed(string Frontend, string Reason);
