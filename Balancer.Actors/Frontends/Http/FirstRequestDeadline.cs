using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace Balancer.Frontends.Http;

/// <summary>
/// Closes a client connection whose first request has not been fully received (TLS handshake and
/// headers) within <c>request-headers-timeout</c>: the slowloris guard, exact to the configured time.
/// Kestrel's own RequestHeadersTimeout stays on for later requests of a keep-alive connection.
/// </summary>
internal static class FirstRequestDeadline
{
    private const string Item = "balancer.first-request";

    public static async Task RunAsync(ConnectionDelegate next, ConnectionContext connection, TimeSpan timeout)
    {
        var arrived = new Signal();
        connection.Items[Item] = arrived;
        using var deadline = new CancellationTokenSource(timeout);
        await using var abortLate = deadline.Token.Register(static state =>
        {
            var (connection, arrived) = ((ConnectionContext, Signal))state!;
            if (!arrived.IsSet)
            {
                connection.Abort(new ConnectionAbortedException("the first request's headers did not arrive within request-headers-timeout"));
            }
        }, (connection, arrived));
        await next(connection);
    }

    /// <summary>A request reached the proxy: its headers are in, the deadline no longer applies.</summary>
    /// <remarks>
    /// The HTTP/2 streams of one connection arrive here at once, and the connection's items are a
    /// plain dictionary: it is written once, before the first request, and only read from then on
    /// (the signal stays in it), so concurrent streams never race on it.
    /// </remarks>
    public static void Arrived(HttpContext context)
    {
        if (context.Features.Get<IConnectionItemsFeature>()?.Items is { } items)
        {
            Arrived(items);
        }
    }

    /// <summary>The same for a request the HTTP/1.1 fast path read.</summary>
    public static void Arrived(ConnectionContext connection) => Arrived(connection.Items);

    private static void Arrived(IDictionary<object, object?> items)
    {
        if (items.TryGetValue(Item, out var value) && value is Signal signal)
        {
            signal.IsSet = true;
        }
    }

    private sealed class Signal
    {
        public volatile bool IsSet;
    }
}
