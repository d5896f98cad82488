using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Balancer.Management;
using Balancer.Tests.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Balancer.Tests.Management;

/// <summary>The admin API of a real node (Kestrel on port 0) in front of real backends.</summary>
[Collection(SerialCollection.Name)]
public class AdminApiTests
{
    private const string Token = "s3cret-admin-token";
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

    private static string Config(BackendSet backends, string extra = "") => $$"""
        balancer {
          node.admin { enabled = on, bind = "127.0.0.1:0", token = "{{Token}}" }
          frontends.web { bind = "127.0.0.1:0", pool = app }
          pools.app {
            affinity.mode = "header:X-Session"
            health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 2, fall = 2, jitter = 0% }
            slow-start = 0s
            {{backends.Hocon()}}
          }
          {{extra}}
        }
        """;

    [Fact]
    public async Task EveryMutatingRoute_RefusedWithoutTheToken_AcceptedWithIt()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var admin = (await host.Extension.AdminStarted)!;
        var guarded = admin.Routes.Where(r => !r.StartsWith("GET ", StringComparison.Ordinal)).ToList();
        guarded.AddRange(admin.Routes.Where(r => r.StartsWith("GET ", StringComparison.Ordinal) && r.Contains("/affinity")));
        // cluster join|leave|down, backend state, weight, add, remove, affinity clear (all and one), affinity reads
        Assert.True(guarded.Count >= 8, "routes found: " + string.Join(", ", admin.Routes));

        foreach (var route in guarded)
        {
            var method = route[..route.IndexOf(' ')];
            // Harmless values: the backend b is drained, a session that does not exist is cleared.
            var path = route[(route.IndexOf(' ') + 1)..]
                .Replace("{pool}", "app").Replace("{backend}", "b").Replace("{key}", "nobody").Replace("{action}", "down-unreachable");
            foreach (var credentials in new[] { null, "Bearer wrong-token", "Basic " + Token, "Bearer " })
            {
                using var refused = await SendAsync(host, method, path, credentials);
                Assert.True(refused.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path} with {credentials ?? "no credentials"}: {(int)refused.StatusCode}");
                Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
            }
            using var accepted = await SendAsync(host, method, path, "Bearer " + Token);
            Assert.NotEqual(HttpStatusCode.Unauthorized, accepted.StatusCode);
            // Routing ignores case, and so does the token check: it reads the matched endpoint, not the path.
            foreach (var spelled in new[] { path.ToUpperInvariant(), MixedCase(path) })
            {
                using var refused = await SendAsync(host, method, spelled, null);
                Assert.True(refused.StatusCode == HttpStatusCode.Unauthorized, $"{method} {spelled} without credentials: {(int)refused.StatusCode}");
            }
        }
        // Reading the cluster, pools and metrics stays open.
        using var open = await Client.GetAsync(await host.AdminUriAsync("/api/pools"));
        Assert.Equal(HttpStatusCode.OK, open.StatusCode);
    }

    /// <summary>"/api/pools/app/affinity" → "/Api/pOols/app/aFfinity": every fixed segment in mixed case, the values as they are.</summary>
    private static string MixedCase(string path) => string.Join('/', path.Split('/').Select((segment, i) =>
        segment is "app" or "b" or "nobody" or "down-unreachable" || segment.Length == 0
            ? segment
            : string.Concat(segment.Select((c, j) => (i + j) % 2 == 0 ? char.ToUpperInvariant(c) : c))));

    [Fact]
    public async Task Mistakes_AnswerProblemDetailsNamingWhatWasWrong()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var cases = new (string Method, string Path, string? Body, HttpStatusCode Status, string Detail)[]
        {
            ("GET", "/api/pools/nope/backends", null, HttpStatusCode.NotFound, "no pool \"nope\" (pools: app)"),
            ("POST", "/api/pools/app/backends/zz/state", """{"state":"drain"}""", HttpStatusCode.NotFound, "pool app has no backend \"zz\""),
            ("POST", "/api/pools/app/backends/a/state", """{"state":"sleep"}""", HttpStatusCode.BadRequest, "expected ready, drain or maint"),
            ("POST", "/api/pools/app/backends/a/state", "{not json", HttpStatusCode.BadRequest, "expected a JSON object"),
            ("POST", "/api/pools/app/backends/a/weight", """{"weight":20000}""", HttpStatusCode.BadRequest, "weight must be 0..10000"),
            ("POST", "/api/pools/app/backends/new", """{"address":"nowhere"}""", HttpStatusCode.BadRequest, "address"),
            ("POST", "/api/cluster/down", """{"address":"akka.tcp://balancer@127.0.0.1:1"}""", HttpStatusCode.NotFound, "is not a member"),
            ("POST", "/api/cluster/explode", "{}", HttpStatusCode.NotFound, "not join, leave, down or down-unreachable"),
            ("GET", "/api/nothing", null, HttpStatusCode.NotFound, "not an admin API route"),
        };
        foreach (var (method, path, body, status, detail) in cases)
        {
            using var response = await SendAsync(host, method, path, "Bearer " + Token, body);
            Assert.True(status == response.StatusCode, $"{method} {path}: {(int)response.StatusCode}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Contains(detail, problem.GetProperty("detail").GetString());
        }
    }

    [Fact]
    public async Task DrainAndAffinity_ThroughTheApi_ChangeRoutingAndShowSessions()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var sessions = new Dictionary<string, string>();
        for (var i = 0; i < 20; i++)
        {
            sessions[$"s{i}"] = await BackendOfSessionAsync(host, $"s{i}");
        }

        using (var drained = await SendAsync(host, "POST", "/api/pools/app/backends/a/state", "Bearer " + Token, """{"state":"drain"}"""))
        {
            Assert.Equal(HttpStatusCode.OK, drained.StatusCode);
        }
        var view = await Client.GetFromJsonAsync<JsonElement>(await host.AdminUriAsync("/api/pools/app/backends"));
        Assert.Equal("drain", view.EnumerateArray().Single(b => b.GetProperty("name").GetString() == "a").GetProperty("adminState").GetString());
        // Drain keeps existing sessions and sends new ones elsewhere.
        foreach (var (session, backend) in sessions)
        {
            Assert.Equal(backend, await BackendOfSessionAsync(host, session));
        }
        Assert.Equal("b", await BackendOfSessionAsync(host, "fresh"));

        var table = await GetAsync(host, "/api/pools/app/affinity?limit=5");
        Assert.Equal(21, table.GetProperty("entries").GetInt32());
        Assert.Equal(5, table.GetProperty("shown").GetArrayLength());
        var one = await GetAsync(host, "/api/pools/app/affinity/s3");
        Assert.Equal(sessions["s3"], one.GetProperty("backend").GetString());

        using (var cleared = await SendAsync(host, "DELETE", "/api/pools/app/affinity/s3", "Bearer " + Token))
        {
            Assert.Equal(HttpStatusCode.OK, cleared.StatusCode);
        }
        using (var gone = await SendAsync(host, "GET", "/api/pools/app/affinity/s3", "Bearer " + Token))
        {
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        }
        using (var all = await SendAsync(host, "DELETE", "/api/pools/app/affinity", "Bearer " + Token))
        {
            Assert.Contains("20 affinity entries", await all.Content.ReadAsStringAsync());
        }
        Assert.Equal(0, (await GetAsync(host, "/api/pools/app/affinity")).GetProperty("entries").GetInt32());
        // A cleared session is balanced afresh: with a drained, it lands on b.
        var moved = sessions.First(s => s.Value == "a").Key;
        Assert.Equal("b", await BackendOfSessionAsync(host, moved));
        // ...and pinned there again, for good: the clear marker does not outrank the new pin once
        // the replicated table has both.
        await Task.Delay(500);
        Assert.Equal("b", (await GetAsync(host, $"/api/pools/app/affinity/{moved}")).GetProperty("backend").GetString());
        using (var readied = await SendAsync(host, "POST", "/api/pools/app/backends/a/state", "Bearer " + Token, """{"state":"ready"}"""))
        {
            Assert.Equal(HttpStatusCode.OK, readied.StatusCode);
        }
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal("b", await BackendOfSessionAsync(host, moved));
        }
    }

    [Fact]
    public async Task Metrics_ParseAsPrometheusText_AndCountersMoveUnderLoad()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var before = Parse(await Client.GetStringAsync(await host.AdminUriAsync("/metrics")));
        for (var i = 0; i < 40; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", i % 4 == 0 ? "/status/404" : "/"));
            using var response = await Client.SendAsync(request);
        }
        var after = Parse(await Client.GetStringAsync(await host.AdminUriAsync("/metrics")));

        double Sum(Dictionary<string, double> samples, string name, string? label = null) =>
            samples.Where(s => s.Key.StartsWith(name + "{", StringComparison.Ordinal) && (label is null || s.Key.Contains(label))).Sum(s => s.Value);
        Assert.Equal(40, Sum(after, "balancer_backend_requests_total") - Sum(before, "balancer_backend_requests_total"));
        Assert.Equal(40, Sum(after, "balancer_frontend_accepted_total", "frontend=\"web\"") - Sum(before, "balancer_frontend_accepted_total", "frontend=\"web\""));
        Assert.Equal(30, Sum(after, "balancer_backend_responses_total", "class=\"2xx\"") - Sum(before, "balancer_backend_responses_total", "class=\"2xx\""));
        Assert.Equal(10, Sum(after, "balancer_backend_responses_total", "class=\"4xx\"") - Sum(before, "balancer_backend_responses_total", "class=\"4xx\""));
        Assert.Equal(40, Sum(after, "balancer_backend_upstream_duration_seconds_count") - Sum(before, "balancer_backend_upstream_duration_seconds_count"));
        Assert.Equal(40, Sum(after, "balancer_backend_upstream_duration_seconds_bucket", "le=\"+Inf\"") - Sum(before, "balancer_backend_upstream_duration_seconds_bucket", "le=\"+Inf\""));
        Assert.Equal(2, Sum(after, "balancer_backend_up"));
        Assert.Equal(1, after["balancer_node_active"]);
        Assert.Equal(1, after["balancer_cluster_members{status=\"up\"}"]);
        // The load carried no session header: nothing pinned.
        Assert.Equal(0, after["balancer_affinity_entries{pool=\"app\"}"]);
    }

    /// <summary>A node whose replicator stopped serves on, but its <c>/readyz</c> says replication does not work: it shares nothing any more.</summary>
    [Fact]
    public async Task Readyz_ReadyWhileReplicating_503NamingTheReplicatorOnceItStops()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var readyz = await host.AdminUriAsync("/readyz");
        await Eventually.Holds(async () => Assert.Equal("ready\n", await Client.GetStringAsync(readyz)), TimeSpan.FromSeconds(10));

        host.System.Stop(Balancer.Replication.BalancerReplicator.Get(host.System).Replicator);

        await Eventually.Holds(async () =>
        {
            using var response = await Client.GetAsync(readyz);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Matches(@"^not ready: replication does not work since \d\d:\d\d:\d\dZ: the replicator stopped\n$", await response.Content.ReadAsStringAsync());
        }, TimeSpan.FromSeconds(5));
        using var served = await Client.GetAsync(host.Uri("web"));
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
    }

    [Fact]
    public async Task Webhook_GetsBackendDownWithinDetection_AndBackendUpAfter()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends, $"alerts.webhooks = [\"{receiver.Url}\"]"));
        await Eventually.Holds(async () => Assert.Equal(2, (await GetAsync(host, "/api/pools")).EnumerateArray().Single().GetProperty("healthy").GetInt32()));

        await Client.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
        var flipped = DateTimeOffset.UtcNow;
        var down = await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-down", TimeSpan.FromSeconds(5));
        // Detected by the probe within fall × interval + timeout (plus scheduling slack on a loaded
        // machine), and posted at detection: the webhook learns it within a second of the node.
        var detected = down.GetProperty("at").GetDateTimeOffset();
        Assert.True(detected - flipped < TimeSpan.FromMilliseconds(2 * 200 + 150 + 1000), $"detected {detected - flipped} after the flip");
        Assert.True(receiver.ReceivedAt(down) - detected < TimeSpan.FromSeconds(1), $"posted {receiver.ReceivedAt(down) - detected} after detection");
        Assert.Equal("b", down.GetProperty("backend").GetString());
        Assert.Contains("HTTP 503", down.GetProperty("text").GetString());

        await Client.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=true", null);
        var up = await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-up", TimeSpan.FromSeconds(5));
        Assert.Equal("app", up.GetProperty("pool").GetString());
    }

    [Fact]
    public async Task Webhook_ThatFailsAtFirst_GetsTheAlertOnRetry()
    {
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 2);
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends, $"alerts {{ webhooks = [\"{receiver.Url}\"], max-attempts = 4 }}"));
        await Client.PostAsync($"http://127.0.0.1:{backends["a"].Port}/control/health?ok=false", null);
        // Attempts after 1 s and 2 s of backoff.
        await receiver.WaitForAsync(e => e.GetProperty("kind").GetString() == "backend-down", TimeSpan.FromSeconds(10));
        Assert.True(receiver.Attempts >= 3);
    }

    /// <summary>Samples of a Prometheus text page by "name{labels}", checking every line's syntax on the way.</summary>
    internal static Dictionary<string, double> Parse(string text)
    {
        var sample = new Regex("""^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})?) (-?[0-9.eE+-]+|\+Inf|NaN)$""");
        var comment = new Regex("""^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$""");
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                Assert.Matches(comment, line);
                continue;
            }
            var match = sample.Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: {line}");
            Assert.True(samples.TryAdd(match.Groups[1].Value, double.Parse(match.Groups[2].Value.Replace("+Inf", "Infinity"), System.Globalization.CultureInfo.InvariantCulture)), $"duplicate series {match.Groups[1].Value}");
        }
        return samples;
    }

    private static async Task<JsonElement> GetAsync(BalancerHost host, string path)
    {
        using var response = await SendAsync(host, "GET", path, "Bearer " + Token);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    [Fact]
    public async Task APageFromAnotherOrigin_CannotChangeAnything_EvenWithoutAToken()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        // The default: no token, loopback only, which a page the operator opens can still reach.
        await using var host = await BalancerHost.StartAsync(Config(backends).Replace($", token = \"{Token}\"", ""));
        var admin = await host.AdminUriAsync("/");

        // A hostile page on another origin sends the "simple" requests a browser sends without a
        // CORS preflight: text/plain and body-less POSTs, fire-and-forget (mode no-cors).
        var attack = $$"""
            <!doctype html><title>loading</title><script>
            const admin = "{{admin.ToString().TrimEnd('/')}}";
            Promise.allSettled([
              fetch(admin + "/api/pools/app/backends/a/state", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"state":"maint"}' }),
              fetch(admin + "/api/pools/app/backends/evil", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"address":"127.0.0.1:6666"}' }),
              fetch(admin + "/api/pools/app/backends/b/weight", { method: "POST", mode: "no-cors", body: new URLSearchParams({ weight: "0" }) }),
              fetch(admin + "/api/cluster/down-unreachable", { method: "POST", mode: "no-cors" }),
            ]).then(() => document.title = "sent");
            </script>
            """;
        var page = KestrelPage(attack);
        await page.StartAsync();
        try
        {
            await using var chromium = await Chromium.LaunchAsync();
            var hostile = await chromium.OpenAsync(new Uri($"http://127.0.0.1:{page.Urls.Select(u => new Uri(u).Port).First()}/"));
            await Eventually.Holds(async () => Assert.Equal("sent", await hostile.TitleAsync()), TimeSpan.FromSeconds(15));
        }
        finally
        {
            await page.StopAsync();
            await page.DisposeAsync();
        }
        var snapshot = host.Extension.Pools.Find("app")!.Snapshot;
        Assert.Equal(["a:ready:100", "b:ready:100"], snapshot.Backends.Select(b => $"{b.Name}:{b.AdminState.ToString().ToLowerInvariant()}:{b.Weight}"));

        // The same requests from any client, and the DNS-rebinding read: refused with a reason.
        using (var plain = new HttpRequestMessage(HttpMethod.Post, new Uri(admin, "/api/pools/app/backends/a/state")) { Content = new StringContent("""{"state":"maint"}""") })
        {
            using var refused = await Client.SendAsync(plain);
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, refused.StatusCode);
            Assert.Contains("needs Content-Type: application/json, got text/plain", await refused.Content.ReadAsStringAsync());
        }
        using (var crossOrigin = new HttpRequestMessage(HttpMethod.Post, new Uri(admin, "/api/pools/app/backends/a/state")) { Content = JsonContent.Create(new { state = "maint" }) })
        {
            crossOrigin.Headers.Add("Origin", "http://evil.example");
            using var refused = await Client.SendAsync(crossOrigin);
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            Assert.False(refused.Headers.Contains("Access-Control-Allow-Origin"));
        }
        using (var rebound = new HttpRequestMessage(HttpMethod.Get, new Uri(admin, "/api/pools")))
        {
            rebound.Headers.Host = "attacker.example:" + admin.Port;
            using var refused = await Client.SendAsync(rebound);
            Assert.Equal(HttpStatusCode.MisdirectedRequest, refused.StatusCode);
        }
        using (var local = new HttpRequestMessage(HttpMethod.Get, new Uri(admin, "/api/pools")))
        {
            local.Headers.Host = "localhost:" + admin.Port;
            using var answered = await Client.SendAsync(local);
            Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        }
        // ctl's own way still works: JSON, no Origin.
        using var drained = await Client.PostAsJsonAsync(new Uri(admin, "/api/pools/app/backends/a/state"), new { state = "drain" });
        Assert.Equal(HttpStatusCode.OK, drained.StatusCode);
    }

    [Fact]
    public async Task EventStreams_AreCappedPerClientAndInTotal_HealthAndMetricsStillAnswer()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync(Config(backends));
        var events = await host.AdminUriAsync("/api/events");
        var open = new List<(HttpClient Client, HttpResponseMessage Response)>();
        try
        {
            // Clients from eight loopback addresses, each opening as many streams as it may.
            for (var address = 2; address < 10; address++)
            {
                for (var i = 0; i < NodeEndpoints.EventStreamLimit.MaxPerClient; i++)
                {
                    open.Add(await OpenStreamAsync(events, $"127.0.0.{address}", HttpStatusCode.OK));
                }
                if (address == 2)
                {
                    using var client = ToolProcess.ClientFrom("127.0.0.2");
                    using var refused = await client.GetAsync(events, HttpCompletionOption.ResponseHeadersRead);
                    Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
                    Assert.Contains($"{NodeEndpoints.EventStreamLimit.MaxPerClient} event streams are open from 127.0.0.2", await refused.Content.ReadAsStringAsync());
                }
            }
            Assert.Equal(NodeEndpoints.EventStreamLimit.MaxTotal, open.Count);
            using (var client = ToolProcess.ClientFrom("127.0.0.10"))
            {
                using var refused = await client.GetAsync(events, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
                Assert.Contains($"{NodeEndpoints.EventStreamLimit.MaxTotal} event streams are open on this node", await refused.Content.ReadAsStringAsync());
            }
            // Saturated event streams leave the node's probes and scrapes alone.
            Assert.Equal(HttpStatusCode.OK, (await Client.GetAsync(await host.AdminUriAsync("/healthz"))).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await Client.GetAsync(await host.AdminUriAsync("/metrics"))).StatusCode);
        }
        finally
        {
            foreach (var (client, response) in open)
            {
                response.Dispose();
                client.Dispose();
            }
        }
        // Closed streams free their places.
        await Eventually.Holds(async () =>
        {
            var again = await OpenStreamAsync(events, "127.0.0.2", HttpStatusCode.OK);
            again.Response.Dispose();
            again.Client.Dispose();
        }, TimeSpan.FromSeconds(10));
    }

    private static async Task<(HttpClient Client, HttpResponseMessage Response)> OpenStreamAsync(Uri events, string from, HttpStatusCode expected)
    {
        var client = ToolProcess.ClientFrom(from);
        var response = await client.GetAsync(events, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(expected, response.StatusCode);
        return (client, response);
    }

    /// <summary>A web server on its own loopback port (another origin) that serves <paramref name="html"/> at /.</summary>
    private static Microsoft.AspNetCore.Builder.WebApplication KestrelPage(string html)
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.MapGet("/", () => Microsoft.AspNetCore.Http.Results.Content(html, "text/html"));
        return app;
    }

    private static async Task<HttpResponseMessage> SendAsync(BalancerHost host, string method, string path, string? authorization, string? body = null)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), await host.AdminUriAsync(path));
        if (authorization is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", authorization);
        }
        if (method != "GET")
        {
            request.Content = new StringContent(body ?? "{}", new MediaTypeHeaderValue("application/json"));
        }
        return await Client.SendAsync(request);
    }

    private static async Task<string> BackendOfSessionAsync(BalancerHost host, string session)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web"));
        request.Headers.Add("X-Session", session);
        using var response = await Client.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return response.Headers.GetValues("X-Backend").Single();
    }
}
