using System.Net;
using Akka.Actor;
using Balancer.Affinity;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Routing;

/// <summary>
/// The one selection path that HTTP, TCP and the client share, tried through each of them where
/// their copies used to differ.
/// </summary>
public class BackendSelectionTests
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, UseCookies = false, PooledConnectionLifetime = TimeSpan.Zero })
    {
        Timeout = TimeSpan.FromSeconds(20),
    };

    /// <summary>A pool whose first backend (algorithm first) refuses every connection, then <c>a</c>.</summary>
    private static string RefusingFirst(BackendSet backends, string affinity) => $$"""
        balancer {
          node.affinity-key = "0123456789abcdef-test-key"
          frontends.web { mode = http, bind = "127.0.0.1:0", pool = app }
          pools.app {
            algorithm = first
            retries = 1
            health-check.kind = none
            affinity { {{affinity}} }
            backends { refusing = "127.0.0.1:{{Ports.Closed()}}", a = "127.0.0.1:{{backends["a"].Port}}" }
          }
        }
        """;

    [Fact]
    public async Task Http_CookieSessionRetriedAfterRefusal_CookieNamesTheBackendThatAnswered()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync(RefusingFirst(backends, "mode = cookie"));
        using var response = await Client.GetAsync(host.Uri("web", "/"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("a", response.Headers.GetValues("X-Backend").Single());

        var cookies = response.Headers.GetValues("Set-Cookie").Where(c => c.StartsWith("BALANCER=", StringComparison.Ordinal)).ToList();
        var cookie = Assert.Single(cookies);
        var value = cookie["BALANCER=".Length..cookie.IndexOf(';')];
        Assert.Equal("a", host.Extension.Pools.Find("app")!.Affinity!.Cookie!.Verify(value));
    }

    [Fact]
    public async Task Http_LearnedSessionRetriedAfterRefusal_PinnedToTheBackendThatAnswered()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync(RefusingFirst(backends, "mode = \"learn-cookie:JSESSIONID\""));
        using var response = await Client.GetAsync(host.Uri("web", "/login"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("a", response.Headers.GetValues("X-Backend").Single());

        var setCookie = response.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("JSESSIONID=", StringComparison.Ordinal));
        var session = setCookie["JSESSIONID=".Length..setCookie.IndexOf(';')];
        Assert.Equal("a", host.Extension.Pools.Find("app")!.Affinity!.Find(session));
    }

    [Fact]
    public async Task LearnCookie_SessionIdsTheClientMadeUp_AreNeverPinned_OnlyThoseABackendSet()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync(RefusingFirst(backends, "mode = \"learn-cookie:JSESSIONID\""));
        var table = host.Extension.Pools.Find("app")!.Affinity!;
        for (var i = 0; i < 50; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", "/"));
            request.Headers.Add("Cookie", $"JSESSIONID=made-up-{i}-{new string('x', 400)}");
            using var response = await Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(0, table.Count);

        // A session the backend set is learned and kept.
        using var login = await Client.GetAsync(host.Uri("web", "/login"));
        var setCookie = login.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("JSESSIONID=", StringComparison.Ordinal));
        Assert.Equal("a", table.Find(setCookie["JSESSIONID=".Length..setCookie.IndexOf(';')]));
        Assert.Equal(1, table.Count);
    }

    [Fact]
    public async Task NewSessions_OneClientAddressOverItsBudget_ServedButNotPinned_OthersUnaffected()
    {
        await using var backends = await BackendSet.StartAsync("a");
        // 2 a second: a burst of 20 (ten seconds' worth).
        await using var host = await BalancerHost.StartAsync(RefusingFirst(backends, "mode = \"header:X-Session\", new-sessions-per-client = 2"));
        var table = host.Extension.Pools.Find("app")!.Affinity!;
        async Task<HttpStatusCode> SendAsync(HttpClient client, string session)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, host.Uri("web", "/"));
            request.Headers.Add("X-Session", session);
            using var response = await client.SendAsync(request);
            return response.StatusCode;
        }

        // One address floods 200 made-up sessions: all served, about its burst pinned.
        using var flooder = ToolProcess.ClientFrom("127.0.0.2");
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await SendAsync(flooder, $"flood-{i}"));
        }
        Assert.InRange(table.Count, 20, 30);
        Assert.InRange(table.SessionsOverBudget, 170, 180);

        // Another address has a budget of its own; a pinned session's later requests cost nothing.
        using var other = ToolProcess.ClientFrom("127.0.0.3");
        var before = table.Count;
        Assert.Equal(HttpStatusCode.OK, await SendAsync(other, "customer-1"));
        Assert.Equal("a", table.Find("customer-1"));
        Assert.Equal(before + 1, table.Count);
        Assert.Equal(HttpStatusCode.OK, await SendAsync(flooder, "flood-0"));
        Assert.Equal("a", table.Find("flood-0"));
    }

    [Fact]
    public async Task Tcp_SessionWhoseBackendIsGone_MovesWhereRendezvousHashingSays_AsHttpAndTheClientDo()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              frontends.raw { mode = tcp, bind = "127.0.0.1:0", pool = app }
              pools.app {
                algorithm = round-robin
                health-check.kind = none
                affinity.mode = source-ip
                {{backends.Hocon()}}
              }
            }
            """);
        var pool = host.Extension.Pools.Find("app")!;
        var expected = pool.Snapshot.RendezvousFor("127.0.0.1")!.Name;
        using var client = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero, UseProxy = false }) { Timeout = TimeSpan.FromSeconds(20) };
        var seen = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            // The session's backend was removed (as by `backend remove`): every node must move it alike.
            await pool.Affinity!.Pin("127.0.0.1", "removed");
            using var response = await client.GetAsync($"http://{host.EndPoint("raw")}/");
            seen.Add(response.Headers.GetValues("X-Backend").Single());
            Assert.Equal(response.Headers.GetValues("X-Backend").Single(), pool.Affinity.Find("127.0.0.1"));
        }
        Assert.All(seen, name => Assert.Equal(expected, name));
    }

    [Fact]
    public async Task Client_SessionRetriedAfterRefusal_PinnedToTheBackendThatAnswered()
    {
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync(RefusingFirst(backends, "mode = \"header:X-Session\""));
        var table = host.Extension.Pools.Find("app")!.Affinity!;
        await table.Pin("s1", "refusing");

        var selection = host.Extension.Client.Selection("app", "s1");
        var first = selection.Next();
        Assert.Equal("refusing", first.Backend!.Name);
        first.Complete(BackendOutcome.ConnectFailed);
        var second = selection.Next();
        Assert.Equal("a", second.Backend!.Name);
        second.Complete(BackendOutcome.Success, 200);
        Assert.False(selection.Next().HasBackend);

        await Eventually.Holds(() => Assert.Equal("a", table.Find("s1")), TimeSpan.FromSeconds(5));
    }

    [Theory]
    [InlineData("never answered")]
    [InlineData("store failed")]
    public async Task UnconfirmedPin_ServedAnyway_CountedAndNeverThrown(string how)
    {
        var settings = TestPools.Pool("affinity { mode = \"header:X-Session\", write = majority }\n" + TestPools.Backends(2));
        var store = new ScriptedStore(fail: how == "store failed");
        var table = new AffinityTable(settings, store, () => DateTimeOffset.UtcNow, new AffinityKey("0123456789abcdef-test-key"), TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200));
        var pool = new PoolHandle(TestPools.Snapshot(settings));
        pool.PublishAffinity(table);

        var selection = BackendSelection.Start(pool, "new-session");
        var lease = selection.Next();
        Assert.True(lease.PinsSession);
        await lease.PinSessionAsync().WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(1, table.UnconfirmedPins);
        Assert.Equal(lease.Backend!.Name, table.Find("new-session"));
        lease.Complete(BackendOutcome.Success);
        Assert.Equal(1, table.UnconfirmedPins);
    }

    /// <summary>
    /// A session whose cluster copy could not be read is pinned provisionally and keeps its backend
    /// here; it stays provisional (losing to any pin of the cluster's) until the replicas have been
    /// read since, and is a member's pin after. One pinned while a majority was out of sight is
    /// confirmed by its first request once the majority is back and re-read.
    /// </summary>
    [Fact]
    public async Task ProvisionalPins_KeepTheirBackend_LoseToTheClusters_AndAreConfirmedOnlyAfterAReread()
    {
        var settings = TestPools.Pool("affinity { mode = \"header:X-Session\", write = majority }\n" + TestPools.Backends(3));
        var now = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);
        var table = new AffinityTable(settings, new ScriptedStore(fail: false), () => now, new AffinityKey("0123456789abcdef-test-key"), TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200));
        table.JoinedCluster();
        var pool = new PoolHandle(TestPools.Snapshot(settings));
        pool.PublishAffinity(table);
        var hash = table.HashOf("slow")!.Value;

        // A lookup a majority answered too slowly: pinned provisionally, where rendezvous puts it, every time.
        now = now.AddSeconds(1);
        var session = new SessionPin(table, "slow", provisional: true);
        var backend = pool.Snapshot.RendezvousFor("slow")!;
        await session.PinAsync(backend).WaitAsync(TimeSpan.FromSeconds(5));
        for (var i = 0; i < 3; i++)
        {
            now = now.AddSeconds(1);
            Assert.Equal(backend.Name, table.Find("slow"));
            Assert.True(table.Cached(hash)!.Value.Provisional, "a request confirmed a pin the cluster never acknowledged");
        }
        // The cluster's pin of the same session arrives by gossip and wins, counted as a move.
        var clusters = pool.Snapshot.Backends.First(b => b.Name != backend.Name).Name;
        Assert.True(table.Merge(hash, new AffinityEntry(clusters, now.AddMinutes(5), Established: true)));
        Assert.Equal(clusters, table.Find("slow"));

        // Out of sight of a majority: provisional; back in sight and re-read: confirmed by its next request.
        table.MajorityInSight = false;
        now = now.AddSeconds(1);
        // The majority write is never confirmed here (the store is scripted): the pin is made at once all the same.
        _ = table.Pin("partitioned", "b");
        var partitioned = table.HashOf("partitioned")!.Value;
        Assert.True(table.Cached(partitioned)!.Value.Provisional);
        now = now.AddSeconds(1);
        table.MajorityInSight = true;
        now = now.AddSeconds(1);
        Assert.Equal("b", table.Find("partitioned"));
        Assert.False(table.Cached(partitioned)!.Value.Provisional);
    }

    /// <summary>An affinity store that never confirms a majority write, or fails it as a stopping store does.</summary>
    private sealed class ScriptedStore(bool fail) : ICanTell
    {
        public void Tell(object message, IActorRef sender)
        {
            if (fail && message is AffinityStore.Write { Acknowledged: { } acknowledged })
            {
                acknowledged.TrySetException(new InvalidOperationException("the affinity store stopped before the pin was written"));
            }
        }
    }
}
