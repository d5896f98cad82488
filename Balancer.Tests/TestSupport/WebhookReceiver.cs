using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace Balancer.Tests.TestSupport;

/// <summary>A real HTTP receiver of alert webhooks on port 0 that records every JSON body.</summary>
internal sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<JsonElement> _received = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _receivedAt = new();
    private int _attempts;

    private WebhookReceiver(int failFirst)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        _app.Run(async context =>
        {
            if (Interlocked.Increment(ref _attempts) <= failFirst)
            {
                context.Response.StatusCode = 500;
                return;
            }
            var body = await JsonSerializer.DeserializeAsync<JsonElement>(context.Request.Body);
            _receivedAt[body.GetRawText()] = DateTimeOffset.UtcNow;
            _received.Enqueue(body);
            context.Response.StatusCode = 204;
        });
    }

    public string Url { get; private set; } = "";

    public int Attempts => Volatile.Read(ref _attempts);

    /// <summary>Every body received so far.</summary>
    public IReadOnlyList<JsonElement> Received => _received.ToArray();

    /// <summary>When <paramref name="received"/> arrived here.</summary>
    public DateTimeOffset ReceivedAt(JsonElement received) => _receivedAt[received.GetRawText()];

    public static async Task<WebhookReceiver> StartAsync(int failFirst = 0)
    {
        var receiver = new WebhookReceiver(failFirst);
        await receiver._app.StartAsync();
        receiver.Url = receiver._app.Urls.First() + "/alerts";
        return receiver;
    }

    public async Task<JsonElement> WaitForAsync(Func<JsonElement, bool> match, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            foreach (var received in _received)
            {
                if (match(received))
                {
                    return received;
                }
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"no matching webhook call within {timeout}; got: {string.Join(" | ", _received.Select(r => r.GetRawText()))}");
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
