using System.Net.Http.Json;
using System.Text.Json;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Event;
using Balancer.Configuration;
using Balancer.Management;

namespace Balancer.Alerts;

/// <summary>
/// Sends alert-worthy <see cref="NotableEvent"/>s (backend down/up, node unreachable/removed, duty
/// change, panic) to every configured webhook as a JSON POST (their sources log them already). Each webhook has its
/// own queue and sender loop, so a slow or dead receiver delays only its own alerts, never routing
/// or the other webhooks; failed POSTs are retried with doubling backoff.
/// One alert per incident: a change every node sees (a probe verdict, a member unreachable or
/// removed, panic) is sent by one node only, the oldest reachable member with Balancer's role (the
/// one an active-passive tier makes active); when it goes, the next oldest takes over as soon as it
/// is unreachable. What only one node sees (a passive ejection, its own duty) that node sends itself.
/// </summary>
internal sealed class AlertNotifier : ReceiveActor, IWithTimers
{
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly string _role;
    private bool _sendsClusterAlerts;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<WebhookSender> _senders = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _http;

    public AlertNotifier(AlertSettings settings, string role)
    {
        _role = role;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, UseCookies = false, AllowAutoRedirect = false }) { Timeout = settings.Timeout };
        foreach (var webhook in settings.Webhooks)
        {
            _senders.Add(new WebhookSender(webhook, settings, _http, _log, _stopping.Token));
        }
        Receive<CheckSender>(_ => SendsClusterAlerts());
        Receive<NotableEvent>(notable =>
        {
            // A member reported unreachable or removed no longer counts, even before the cluster's state says so.
            var gone = notable.Kind is "node-unreachable" or "member-removed" ? notable.Member : null;
            if (!NotableEvent.AlertKinds.Contains(notable.Kind) || (!notable.NodeLocal && !SendsClusterAlerts(gone)))
            {
                return;
            }
            foreach (var sender in _senders)
            {
                sender.Enqueue(notable);
            }
        });
    }

    public static Props Props(AlertSettings settings, string role) => Akka.Actor.Props.Create(() => new AlertNotifier(settings, role));

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(NotableEvent));
        if (_senders.Count > 0)
        {
            // Says when this node starts or stops sending the cluster's alerts, not only when one comes.
            Timers.StartPeriodicTimer("sender", CheckSender.Instance, TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>True while this node is the one that sends alerts every node sees: the oldest reachable member with Balancer's role.</summary>
    private bool SendsClusterAlerts(string? gone = null)
    {
        var sends = Membership.DutyCoordinator.ActiveMember(_cluster.State, _role, gone)?.UniqueAddress.Equals(_cluster.SelfUniqueAddress) == true;
        if (sends != _sendsClusterAlerts && _senders.Count > 0)
        {
            _log.Info(sends ? "alerts: this node sends the cluster's alerts (the oldest reachable member)" : "alerts: another node now sends the cluster's alerts");
        }
        _sendsClusterAlerts = sends;
        return sends;
    }

    private sealed class CheckSender
    {
        public static readonly CheckSender Instance = new();
        private CheckSender() { }
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        _stopping.Cancel();
        _http.Dispose();
    }

    private sealed class WebhookSender
    {
        private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
        private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
        private readonly Channel<NotableEvent> _queue;
        private readonly Uri _webhook;
        private readonly AlertSettings _settings;
        private readonly HttpClient _http;
        private readonly ILoggingAdapter _log;

        public WebhookSender(Uri webhook, AlertSettings settings, HttpClient http, ILoggingAdapter log, CancellationToken stopping)
        {
            _webhook = webhook;
            _settings = settings;
            _http = http;
            _log = log;
            _queue = Channel.CreateBounded<NotableEvent>(new BoundedChannelOptions(settings.QueueLimit)
            {
                FullMode = BoundedChannelFullMode.DropOldest,
                SingleReader = true,
            });
            _ = Task.Run(() => SendLoopAsync(stopping), CancellationToken.None);
        }

        public void Enqueue(NotableEvent notable) => _queue.Writer.TryWrite(notable);

        private async Task SendLoopAsync(CancellationToken stopping)
        {
            try
            {
                await foreach (var notable in _queue.Reader.ReadAllAsync(stopping).ConfigureAwait(false))
                {
                    await SendAsync(notable, stopping).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
            }
        }

        private async Task SendAsync(NotableEvent notable, CancellationToken stopping)
        {
            var backoff = TimeSpan.FromSeconds(1);
            for (var attempt = 1; ; attempt++)
            {
                string problem;
                try
                {
                    using var response = await _http.PostAsJsonAsync(_webhook, notable, Json, stopping).ConfigureAwait(false);
                    if (response.IsSuccessStatusCode)
                    {
                        return;
                    }
                    problem = $"HTTP {(int)response.StatusCode}";
                }
                catch (Exception e) when (!stopping.IsCancellationRequested)
                {
                    problem = e is TaskCanceledException ? $"no answer within {_settings.Timeout.TotalSeconds:0.#}s" : e.Message;
                }
                if (attempt >= _settings.MaxAttempts)
                {
                    _log.Warning("alert webhook {0}: giving up on \"{1}\" after {2} attempts ({3})", _webhook, notable.Text, attempt, problem);
                    return;
                }
                _log.Info("alert webhook {0}: attempt {1} failed ({2}); retrying in {3:0.#}s", _webhook, attempt, problem, backoff.TotalSeconds);
                await Task.Delay(backoff, stopping).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, backoff.Ticks * 2));
            }
        }
    }
}
