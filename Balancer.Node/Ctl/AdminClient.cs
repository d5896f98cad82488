using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace Balancer.Node.Ctl;

/// <summary>A failure `ctl` reports as one line with exit code 1: the node is unreachable, or it refused the command.</summary>
internal sealed class CtlException(string message) : Exception(message);

/// <summary>The HTTP side of <c>balancer ctl</c>: calls a node's admin API and turns every failure into one readable line.</summary>
internal sealed class AdminClient : IDisposable
{
    private readonly HttpClient _http;

    public AdminClient(string target, string? token, TimeSpan timeout)
    {
        Target = target;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(3) })
        {
            BaseAddress = new Uri($"http://{target}/"),
            Timeout = timeout,
        };
        if (!string.IsNullOrEmpty(token))
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    public string Target { get; }

    public Task<JsonElement> GetAsync(string path, CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Get, path, null, cancellationToken);

    public Task<JsonElement> PostAsync(string path, object? body, CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Post, path, body ?? new { }, cancellationToken);

    public Task<JsonElement> DeleteAsync(string path, CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Delete, path, null, cancellationToken);

    /// <summary>The backends of <paramref name="pool"/>, or of every pool, in the API's order.</summary>
    public async Task<List<JsonElement>> BackendsAsync(string? pool, CancellationToken cancellationToken)
    {
        var pools = pool is not null
            ? [pool]
            : (await GetAsync("api/pools", cancellationToken)).EnumerateArray().Select(p => p.GetProperty("name").GetString()!).ToList();
        var all = new List<JsonElement>();
        foreach (var name in pools)
        {
            all.AddRange((await GetAsync($"api/pools/{Uri.EscapeDataString(name)}/backends", cancellationToken)).EnumerateArray());
        }
        return all;
    }

    /// <summary>Reads <c>GET /api/events</c> and hands each event to <paramref name="onEvent"/> until cancelled or the node goes away.</summary>
    public async Task TailAsync(Action<JsonElement> onEvent, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/events?recent=1");
        using var streaming = new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(3) })
        {
            BaseAddress = _http.BaseAddress,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        HttpResponseMessage response;
        try
        {
            response = await streaming.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw Unreachable(e);
        }
        using (response)
        {
            await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
            using var reader = new StreamReader(stream);
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    onEvent(JsonDocument.Parse(line[6..]).RootElement.Clone());
                }
            }
            throw new CtlException($"node {Target} closed the event stream (stopping?)");
        }
    }

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw Unreachable(e);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CtlException($"node {Target} did not answer within {_http.Timeout.TotalSeconds:0.#}s");
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            JsonElement json;
            try
            {
                json = text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
            }
            catch (JsonException)
            {
                throw new CtlException($"node {Target}: {(int)response.StatusCode} {text.Trim()}");
            }
            if (!response.IsSuccessStatusCode)
            {
                var detail = json.ValueKind == JsonValueKind.Object && json.TryGetProperty("detail", out var d) ? d.GetString() : text.Trim();
                throw new CtlException($"node {Target} refused: {detail} ({(int)response.StatusCode})");
            }
            return json;
        }
    }

    private CtlException Unreachable(HttpRequestException e)
    {
        var reason = e.InnerException is SocketException socket ? socket.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => "connection refused (is the node running, and is this its admin address?)",
            SocketError.TimedOut => "connection timed out",
            SocketError.HostNotFound => "host not found",
            _ => socket.Message,
        } : e.Message;
        return new CtlException($"node {Target} unreachable: {reason}");
    }

    public void Dispose() => _http.Dispose();
}
