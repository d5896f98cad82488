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
/// </summary>
internal sealed class AlertNotifier : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<WebhookSender> _senders = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _http;

    public AlertNotifier(AlertSettings settings)
    {
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, UseCookies = false, AllowAutoRedirect = false }) { Timeout = settings.Timeout };
        foreach (var webhook in settings.Webhooks)
        {
            _senders.Add(new WebhookSender(webhook, settings, _http, _log, _stopping.Token));
        }
        Receive<NotableEvent>(notable =>
        {
            if (!NotableEvent.AlertKinds.Contains(notable.Kind))
            {
                return;
            }
            foreach (var sender in _senders)
            {
                sender.Enqueue(notable);
            }
        });
    }

    public static Props Props(AlertSettings settings) => Akka.Actor.Props.Create(() => new AlertNotifier(settings));

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(NotableEvent));

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
