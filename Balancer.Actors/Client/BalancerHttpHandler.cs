using System.Net.Http;
using Balancer.Routing;

namespace Balancer.Client;

/// <summary>
/// Lets an <see cref="HttpClient"/> call a pool by name: <c>http://app/orders/42</c> goes to a live
/// backend of pool <c>app</c>, chosen by <see cref="IBalancerClient"/>. A backend that refuses the
/// connection is replaced by another (up to the pool's <c>retries</c>), so a dead backend costs no
/// failed call; outcomes feed passive health. An affinity key set with
/// <c>request.Options.Set(BalancerHttpHandler.AffinityKey, "user-42")</c> keeps a caller on one backend.
/// <code>
/// var http = new HttpClient(new BalancerHttpHandler(BalancerExtension.Get(system).Client) { InnerHandler = new SocketsHttpHandler() });
/// </code>
/// </summary>
public sealed class BalancerHttpHandler : DelegatingHandler
{
    /// <summary>The request option that carries an affinity key.</summary>
    public static readonly HttpRequestOptionsKey<string> AffinityKey = new("Balancer.AffinityKey");

    private readonly IBalancerClient _client;
    private readonly string? _pool;

    /// <summary>
    /// A handler over <paramref name="client"/>; set <see cref="DelegatingHandler.InnerHandler"/> (or
    /// use the HttpClientFactory: <c>services.AddHttpClient("inventory").AddBalancer()</c>). Requests
    /// go to <paramref name="pool"/>, or, when it is null, to the pool their host names.
    /// </summary>
    public BalancerHttpHandler(IBalancerClient client, string? pool = null)
    {
        _client = client;
        _pool = pool;
    }

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var original = request.RequestUri ?? throw new InvalidOperationException("the request has no URI");
        var pool = _pool ?? original.Host;
        request.Options.TryGetValue(AffinityKey, out var affinityKey);
        var selection = _client.Selection(pool, affinityKey);
        var settings = selection.Snapshot.Settings;
        while (true)
        {
            var lease = selection.Next();
            if (lease.Backend is not { } backend)
            {
                throw new HttpRequestException(HttpRequestError.ConnectionError, $"pool {pool} has no available backend{(selection.Attempts > 0 ? $" (tried {selection.Attempts})" : "")}");
            }
            request.RequestUri = new UriBuilder(original) { Host = backend.Address.Host, Port = backend.Address.Port }.Uri;
            try
            {
                var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
                var status = (int)response.StatusCode;
                lease.Complete(status >= 500 && settings.Passive.Count5xx ? BackendOutcome.Failed : BackendOutcome.Success, status);
                return response;
            }
            catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError)
            {
                lease.Complete(BackendOutcome.ConnectFailed);
                // Nothing reached the backend: another may take the call.
                if (!selection.CanRetry || cancellationToken.IsCancellationRequested)
                {
                    throw;
                }
            }
            catch (OperationCanceledException)
            {
                lease.Complete(BackendOutcome.Abandoned);
                throw;
            }
            catch
            {
                lease.Complete(BackendOutcome.Failed);
                throw;
            }
            finally
            {
                request.RequestUri = original;
            }
        }
    }
}
