using System.Net;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Affinity;

/// <summary>Three nodes in one process, each with HTTP frontends on port 0, in front of three real Kestrel backends.</summary>
public sealed class AffinityCluster : IAsyncLifetime
{
    internal BackendSet Backends { get; private set; } = null!;

    public List<ActorSystem> Nodes { get; } = new();

    public string ExtraPool { get; init; } = "";

    public async Task InitializeAsync()
    {
        Backends = await BackendSet.StartAsync("a", "b", "c");
        var pool = (string mode) => $$"""
            affinity { mode = "{{mode}}", ttl = 10m }
            health-check.kind = none
            slow-start = 0s
            {{Backends.Hocon()}}
            """;
        var config = $$"""
            balancer.node.affinity-key = "0123456789abcdef-test-key"
            balancer.frontends {
              hdr { bind = "127.0.0.1:0", pool = hdr }
              ck { bind = "127.0.0.1:0", pool = ck }
              learn { bind = "127.0.0.1:0", pool = learn }
              src { mode = tcp, bind = "127.0.0.1:0", pool = src }
            }
            balancer.pools {
              hdr { {{pool("header:X-Session")}}
                affinity.write = majority }
              ck { {{pool("cookie")}} }
              learn { {{pool("learn-cookie:JSESSIONID")}} }
              src { {{pool("source-ip")}} }
            }
            """;
        Nodes.AddRange(await InProcessCluster.StartAsync("balancer-affinity", ConfigurationFactory.ParseString(config)));
        foreach (var node in Nodes)
        {
            var extension = BalancerExtension.Get(node);
            await extension.FrontendsStarted.WaitAsync(TimeSpan.FromSeconds(20));
            await BalancerHost.WaitForPoolRoutersAsync(extension);
        }
    }

    public Uri Uri(int node, string frontend, string path = "/") => new($"http://{BalancerExtension.Get(Nodes[node]).FrontendEndPoints[frontend][0]}{path}");

    public async Task DisposeAsync()
    {
        await Task.WhenAll(Nodes.Select(n => n.Terminate().WaitAsync(TimeSpan.FromSeconds(20))));
        await Backends.DisposeAsync();
    }
}

[Collection(SerialCollection.Name)]
public class AffinityClusterTests : IClassFixture<AffinityCluster>
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, UseCookies = false }) { Timeout = TimeSpan.FromSeconds(10) };
    private readonly AffinityCluster _cluster;

    public AffinityClusterTests(AffinityCluster cluster) => _cluster = cluster;

    [Fact]
    public async Task HeaderSessions_CreatedOnOneNode_SameBackendOnEveryNode_MaintMovesDrainKeeps()
    {
        var sessions = new Dictionary<string, string>();
        for (var i = 0; i < 60; i++)
        {
            sessions[$"s{i}"] = await BackendOfAsync(_cluster.Uri(0, "hdr"), ("X-Session", $"s{i}"));
        }
        Assert.Equal(3, sessions.Values.Distinct().Count());
        await Eventually.Holds(async () =>
        {
            foreach (var node in new[] { 1, 2 })
            {
                foreach (var (session, backend) in sessions)
                {
                    Assert.Equal(backend, await BackendOfAsync(_cluster.Uri(node, "hdr"), ("X-Session", session)));
                }
            }
        });

        // Drain keeps existing sessions; maint moves them, and they stay where they moved.
        var onA = sessions.Where(s => s.Value == "a").Select(s => s.Key).First();
        await Router(1, "hdr").Ask<Status>(new PoolRouter.SetAdminState("a", BackendAdminState.Drain), TimeSpan.FromSeconds(10));
        await Eventually.Holds(() => Assert.Equal(BackendAdminState.Drain, Snapshot(2, "hdr").Backends[0].AdminState));
        Assert.Equal("a", await BackendOfAsync(_cluster.Uri(2, "hdr"), ("X-Session", onA)));
        Assert.NotEqual("a", await BackendOfAsync(_cluster.Uri(2, "hdr"), ("X-Session", "brand-new")));

        await Router(1, "hdr").Ask<Status>(new PoolRouter.SetAdminState("a", BackendAdminState.Maint), TimeSpan.FromSeconds(10));
        await Eventually.Holds(() => Assert.Equal(BackendAdminState.Maint, Snapshot(2, "hdr").Backends[0].AdminState));
        var moved = await BackendOfAsync(_cluster.Uri(2, "hdr"), ("X-Session", onA));
        Assert.NotEqual("a", moved);
        await Eventually.Holds(async () =>
        {
            for (var node = 0; node < 3; node++)
            {
                Assert.Equal(moved, await BackendOfAsync(_cluster.Uri(node, "hdr"), ("X-Session", onA)));
            }
        });
        await Router(1, "hdr").Ask<Status>(new PoolRouter.SetAdminState("a", BackendAdminState.Ready), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task AClearedSession_PinnedAgain_IsFollowedByEveryNode()
    {
        var tables = _cluster.Nodes.Select(n => BalancerExtension.Get(n).Pools.Find("hdr")!.Affinity!).ToList();
        var hash = tables[0].HashOf("clear-me")!.Value;
        await BackendOfAsync(_cluster.Uri(0, "hdr"), ("X-Session", "clear-me"));
        await Eventually.Holds(() => Assert.All(tables, t => Assert.NotNull(t.Lookup(hash))));

        Assert.Equal(1, await tables[0].Clear(hash).WaitAsync(TimeSpan.FromSeconds(10)));
        await Eventually.Holds(() => Assert.All(tables, t => Assert.Null(t.Lookup(hash))));

        // Its next request pins it again, and every node follows the new pin, not the clear.
        var again = await BackendOfAsync(_cluster.Uri(0, "hdr"), ("X-Session", "clear-me"));
        await Eventually.Holds(() => Assert.All(tables, t => Assert.Equal(again, t.Lookup(hash)?.Backend)));
    }

    [Fact]
    public async Task MajoritySessions_AreFoundOnEveryNode_TheMomentTheFirstResponseArrives()
    {
        // write = majority: the first response comes once a majority holds the pin, and a node whose
        // cache has not seen the session asks a majority for it: the two majorities meet, so no
        // waiting for gossip is needed (nor allowed here).
        for (var i = 0; i < 40; i++)
        {
            var session = $"at-once-{i}";
            var backend = await BackendOfAsync(_cluster.Uri(i % 3, "hdr"), ("X-Session", session));
            Assert.Equal(backend, await BackendOfAsync(_cluster.Uri((i + 1) % 3, "hdr"), ("X-Session", session)));
            Assert.Equal(backend, await BackendOfAsync(_cluster.Uri((i + 2) % 3, "hdr"), ("X-Session", session)));
        }
    }

    [Fact]
    public async Task CookieSessions_AnyNodeHonoursTheCookie_TamperedCookieIsIgnored()
    {
        var cookies = new Dictionary<string, string>();
        for (var i = 0; i < 30; i++)
        {
            using var response = await Client.GetAsync(_cluster.Uri(0, "ck"));
            var setCookie = response.Headers.GetValues("Set-Cookie").Single();
            Assert.StartsWith("BALANCER=", setCookie);
            Assert.Contains("httponly", setCookie, StringComparison.OrdinalIgnoreCase);
            cookies[setCookie.Split(';')[0]] = response.Headers.GetValues("X-Backend").Single();
        }
        Assert.Equal(3, cookies.Values.Distinct().Count());
        foreach (var node in new[] { 1, 2 })
        {
            foreach (var (cookie, backend) in cookies)
            {
                Assert.Equal(backend, await BackendOfAsync(_cluster.Uri(node, "ck"), ("Cookie", cookie)));
            }
        }

        // Pointing the cookie at another backend breaks its MAC: balanced normally, with a fresh cookie.
        var (original, pinned) = cookies.First();
        var other = pinned == "a" ? "b" : "a";
        var tampered = "BALANCER=" + other + original[original.IndexOf('.')..];
        var seen = new HashSet<string>();
        for (var i = 0; i < 6; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, _cluster.Uri(1, "ck"));
            request.Headers.Add("Cookie", tampered);
            using var response = await Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.Contains("Set-Cookie"));
            seen.Add(response.Headers.GetValues("X-Backend").Single());
        }
        Assert.Equal(3, seen.Count);
    }

    [Fact]
    public async Task LearnedCookie_SessionSetByTheBackend_FollowedByEveryNode()
    {
        var sessions = new Dictionary<string, string>();
        for (var i = 0; i < 20; i++)
        {
            using var response = await Client.GetAsync(_cluster.Uri(0, "learn", "/login"));
            var jsession = response.Headers.GetValues("Set-Cookie").Single().Split(';')[0];
            sessions[jsession] = response.Headers.GetValues("X-Backend").Single();
        }
        await Eventually.Holds(async () =>
        {
            foreach (var node in new[] { 1, 2 })
            {
                foreach (var (cookie, backend) in sessions)
                {
                    Assert.Equal(backend, await BackendOfAsync(_cluster.Uri(node, "learn"), ("Cookie", cookie)));
                }
            }
        });
    }

    [Fact]
    public async Task SourceIp_TcpConnectionsFromOneClient_SameBackendOnEveryNode()
    {
        var first = await BackendOverTcpAsync(0);
        await Eventually.Holds(async () =>
        {
            for (var node = 0; node < 3; node++)
            {
                for (var i = 0; i < 3; i++)
                {
                    Assert.Equal(first, await BackendOverTcpAsync(node));
                }
            }
        });
    }

    private async Task<string> BackendOverTcpAsync(int node)
    {
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero });
        using var response = await client.GetAsync(_cluster.Uri(node, "src"));
        return response.Headers.GetValues("X-Backend").Single();
    }

    private IActorRef Router(int node, string pool) => BalancerExtension.Get(_cluster.Nodes[node]).PoolRouter(pool);

    private PoolSnapshot Snapshot(int node, string pool) => BalancerExtension.Get(_cluster.Nodes[node]).Pools.Find(pool)!.Snapshot;

    [Fact]
    public async Task WebSockets_PinnedAtTheUpgrade_ReachTheSameBackendThroughEveryNode_OverHttp1AndHttp2()
    {
        using var http2 = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false });
        var backends = new Dictionary<string, string>();
        for (var i = 0; i < 9; i++)
        {
            backends[$"ws{i}"] = await WebSocketBackendAsync(_cluster.Uri(0, "hdr", "/ws"), $"ws{i}", http2: null);
        }
        Assert.True(backends.Values.Distinct().Count() > 1, "the sessions all went to one backend");
        for (var node = 1; node < 3; node++)
        {
            foreach (var (session, backend) in backends)
            {
                // Every other connection over HTTP/2 (extended CONNECT) to the same pinned backend.
                var viaHttp2 = (node + session.Length) % 2 == 0 ? http2 : null;
                Assert.Equal(backend, await WebSocketBackendAsync(_cluster.Uri(node, "hdr", "/ws"), session, viaHttp2));
            }
        }
    }

    /// <summary>Opens a WebSocket with the session header, returns the backend that greeted it, and checks that it echoes.</summary>
    private static async Task<string> WebSocketBackendAsync(Uri uri, string session, HttpMessageInvoker? http2)
    {
        using var socket = new System.Net.WebSockets.ClientWebSocket();
        socket.Options.SetRequestHeader("X-Session", session);
        var target = new Uri("ws://" + uri.Authority + uri.PathAndQuery);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        if (http2 is null)
        {
            await socket.ConnectAsync(target, timeout.Token);
        }
        else
        {
            socket.Options.HttpVersion = HttpVersion.Version20;
            socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
            // With the exact version asked, the connection is HTTP/2 or fails.
            await socket.ConnectAsync(target, http2, timeout.Token);
        }
        var buffer = new byte[1024];
        var greeting = await socket.ReceiveAsync(buffer, timeout.Token);
        var backend = System.Text.Encoding.UTF8.GetString(buffer, 0, greeting.Count)["hello from ".Length..];
        await socket.SendAsync("ping"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, timeout.Token);
        var echo = await socket.ReceiveAsync(buffer, timeout.Token);
        Assert.Equal("ping", System.Text.Encoding.UTF8.GetString(buffer, 0, echo.Count));
        await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, timeout.Token);
        return backend;
    }

    private static async Task<string> BackendOfAsync(Uri uri, (string Name, string Value) header)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Add(header.Name, header.Value);
        using var response = await Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response.Headers.GetValues("X-Backend").Single();
    }
}

/// <summary>Entries survive the death of the node that made them, and expire everywhere after ttl without traffic.</summary>
[Collection(SerialCollection.Name)]
public class AffinityLifetimeTests
{
    private static Config Cluster(BackendSet backends, string ttl) => ConfigurationFactory.ParseString($$"""
        balancer.node.start-frontends = off
        balancer.pools.app {
          affinity { mode = "header:X-Session", ttl = {{ttl}}, write = majority }
          health-check.kind = none
          {{backends.Hocon()}}
        }
        """).WithFallback(BalancerHost.ClusterOfOne);

    [Fact]
    public async Task Entries_SurviveTheCreatingNode()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        // A TTL far beyond the test, so that how fast this machine is decides nothing.
        var nodes = await InProcessCluster.StartAsync("balancer-survive", Cluster(backends, "10m"));
        try
        {
            var tables = nodes.Select(n => BalancerExtension.Get(n).Pools.Find("app")!.Affinity!).ToList();

            // Pinned on node 0 with a majority acknowledgement, then node 0 goes away.
            for (var i = 0; i < 50; i++)
            {
                await tables[0].Pin($"s{i}", "abc"[i % 3].ToString()).WaitAsync(TimeSpan.FromSeconds(10));
            }
            await nodes[0].Terminate();
            await Until(() => tables.Skip(1).All(t => Enumerable.Range(0, 50).All(i => t.Find($"s{i}") == "abc"[i % 3].ToString())), "entries on the survivors");
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.Terminate()));
        }
    }

    [Fact]
    public async Task Entries_ExpireEverywhereAfterTtl_FromEveryCacheAndReplica()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        var nodes = await InProcessCluster.StartAsync("balancer-ttl", Cluster(backends, "2s"));
        try
        {
            var tables = nodes.Select(n => BalancerExtension.Get(n).Pools.Find("app")!.Affinity!).ToList();
            // Acknowledged by a majority: at least one other node's replica held every entry.
            await Task.WhenAll(Enumerable.Range(0, 50).Select(i => tables[0].Pin($"s{i}", "abc"[i % 3].ToString()).WaitAsync(TimeSpan.FromSeconds(10))));

            // No traffic for longer than the TTL: gone from every node's cache and replica.
            await Task.Delay(TimeSpan.FromSeconds(2));
            await Until(() => tables.All(t => t.Count == 0 && t.Find("s1") is null), "entries expired and swept from every cache");
            var pool = BalancerExtension.Get(nodes[0]).Settings.FindPool("app")!;
            foreach (var node in nodes)
            {
                var replicator = Balancer.Replication.BalancerReplicator.Get(node).Replicator;
                foreach (var bucket in Balancer.Replication.ReplicatedKeys.AffinityBuckets(pool))
                {
                    await Eventually.Holds(async () =>
                    {
                        var held = await replicator.Ask<Akka.DistributedData.IGetResponse>(
                            Akka.DistributedData.Dsl.Get(bucket, Akka.DistributedData.ReadLocal.Instance), TimeSpan.FromSeconds(5));
                        Assert.True(held is Akka.DistributedData.NotFound || (held is Akka.DistributedData.GetSuccess success && success.Get(bucket).Entries.IsEmpty),
                            $"{bucket.Id} still holds entries on {Akka.Cluster.Cluster.Get(node).SelfAddress}");
                    }, TimeSpan.FromSeconds(20));
                }
            }
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.Terminate()));
        }
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            await Task.Delay(100);
        }
    }
}
