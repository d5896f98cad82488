using System.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace Balancer.Telemetry;

/// <summary>
/// The spans Balancer records: one per proxied request (<c>proxy POOL</c>, a child of the client's
/// W3C trace context, whose own context is what the backend receives) and one per TCP connection
/// (<c>tcp POOL</c>). With nobody listening to <see cref="SourceName"/> nothing is created and a
/// request pays one check.
/// </summary>
public static class BalancerTracing
{
    /// <summary>The <see cref="ActivitySource"/> name to add to a host's own OpenTelemetry tracing.</summary>
    public const string SourceName = "Balancer";

    internal static readonly ActivitySource Source = new(SourceName, typeof(BalancerTracing).Assembly.GetName().Version?.ToString());

    /// <summary>The span of one proxied request, or null when nobody records it.</summary>
    internal static Activity? StartRequest(HttpContext context, string frontend, string pool)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        ActivityContext parent = default;
        if (Activity.Current is { } current && !current.Source.HasListeners())
        {
            // ASP.NET Core's own activity, which nobody records (a host that records it gets the
            // balancer's span as its child instead): the span hangs off the client's context, not
            // off a span no collector will see. Called from an async method, this does not leak
            // to the caller.
            Activity.Current = null;
        }
        var headers = context.Request.Headers;
        if (Activity.Current is null && headers.TraceParent is { Count: 1 } traceParent)
        {
            ActivityContext.TryParse(traceParent[0], headers.TraceState.Count == 1 ? headers.TraceState[0] : null, isRemote: true, out parent);
        }
        var activity = Source.StartActivity("proxy " + pool, ActivityKind.Server, parent);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("http.request.method", context.Request.Method);
            activity.SetTag("url.path", context.Request.Path.Value);
            activity.SetTag("balancer.frontend", frontend);
            activity.SetTag("balancer.pool", pool);
        }
        return activity;
    }

    /// <summary>The span of one TCP connection, or null when nobody records it.</summary>
    internal static Activity? StartConnection(string frontend, string pool)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        var activity = Source.StartActivity("tcp " + pool, ActivityKind.Server);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("balancer.frontend", frontend);
            activity.SetTag("balancer.pool", pool);
        }
        return activity;
    }

    /// <summary>Records how the request or connection was served: its last backend, attempts, affinity and status.</summary>
    internal static void Served(Activity? activity, string? backend, int attempts, string affinity, int status = 0)
    {
        if (activity is not { IsAllDataRequested: true })
        {
            return;
        }
        activity.SetTag("balancer.backend", backend);
        activity.SetTag("balancer.attempts", attempts);
        activity.SetTag("balancer.retries", Math.Max(0, attempts - 1));
        activity.SetTag("balancer.affinity", affinity);
        if (status != 0)
        {
            activity.SetTag("http.response.status_code", status);
            if (status >= 500)
            {
                activity.SetStatus(ActivityStatusCode.Error);
            }
        }
        if (backend is null)
        {
            activity.SetStatus(ActivityStatusCode.Error, "no backend answered");
        }
    }
}
