using System.Net;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Serialization;
using Balancer.Client;
using Balancer.Hosting;
using Balancer.Routing;
using Balancer.Tests.TestSupport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Balancer.Tests.Embedding;

/// <summary>Balancer inside someone else's ActorSystem: their actors, serializers and cluster settings stay theirs.</summary>
[Collection(SerialCollection.Name)]
public class EmbeddingTests
{
    private static string Pool(BackendSet backends, string extra = "") => $$"""
        balancer.pools.inventory {
          health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
          slow-start = 0s
          {{extra}}
          {{backends.Hocon()}}
        }
        """;

    [Fact]
    public async Task ExistingSystem_KeepsItsActorsSerializersAndClusterSettings_AndBalancerRoutes()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        var userConfig = ConfigurationFactory.ParseString($$"""
            akka.actor.serializers.orders = "{{typeof(OrderSerializer).AssemblyQualifiedName}}"
            akka.actor.serialization-bindings { "{{typeof(PlaceOrder).AssemblyQualifiedName}}" = orders }
            akka.cluster.roles = [orders, lb]
            akka.cluster.failure-detector.acceptable-heartbeat-pause = 7s
            balancer.node.role = lb
            {{Pool(backends)}}
            """).WithFallback(BalancerHost.ClusterOfOne);
        var workingDirectoryBefore = Directory.GetFileSystemEntries(Environment.CurrentDirectory).ToHashSet();
        var system = ActorSystem.Create("orders", userConfig);
        try
        {
            var echo = system.ActorOf(Props.Create(() => new OrderDesk()), "order-desk");
            Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress);
            var balancer = BalancerExtension.Get(system);
            await BalancerHost.WaitForPoolRoutersAsync(balancer);

            // The user's actor, serializer and cluster settings are untouched.
            Assert.Equal("placed 7", await echo.Ask<string>(new PlaceOrder(7), TimeSpan.FromSeconds(5)));
            Assert.IsType<OrderSerializer>(system.Serialization.FindSerializerFor(new PlaceOrder(1)));
            Assert.Equal(TimeSpan.FromSeconds(7), system.Settings.Config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
            // Balancer lives under /system: the user's /user namespace is theirs alone.
            await Assert.ThrowsAsync<ActorNotFoundException>(() => system.ActorSelection("/user/balancer").ResolveOne(TimeSpan.FromSeconds(1)));
            Assert.Equal("/system/balancer", balancer.Guardian.Path.ToStringWithoutAddress());
            // Balancer's own values still go through its serializer.
            Assert.IsType<Balancer.Serialization.BalancerSerializer>(system.Serialization.FindSerializerFor(Balancer.Affinity.AffinityBucket.Empty));

            // No frontends configured: the client picks backends for the host's own calls.
            await Eventually.Holds(() => Assert.Equal(3, balancer.Client.View("inventory").Routable.Length));
            var picked = Enumerable.Range(0, 30).Select(_ =>
            {
                var lease = balancer.Client.Select("inventory");
                lease.Complete(BackendOutcome.Success, 200);
                return lease.Backend!.Name;
            }).ToList();
            Assert.Equal(["a", "b", "c"], picked.Distinct().Order());
            Assert.Equal(30, balancer.Client.View("inventory").Backends.Sum(b => b.Counters.Requests));
            Assert.Equal(0, balancer.Client.View("inventory").Backends.Sum(b => b.Counters.InFlight));
            Assert.Throws<KeyNotFoundException>(() => balancer.Client.Select("nope"));

            // Balancer's state travels through its own replicator (the host's Distributed Data is
            // not started for it), and the probe shards keep their placement in replicated data:
            // nothing appears in the app's working directory (no snapshots/, no data/).
            Assert.Equal("/system/balancer-replicator", Balancer.Replication.BalancerReplicator.Get(system).Replicator.Path.ToStringWithoutAddress());
            await Assert.ThrowsAsync<ActorNotFoundException>(() => system.ActorSelection("/user/ddataReplicator").ResolveOne(TimeSpan.FromSeconds(1)));
            await Eventually.Holds(async () => Assert.NotNull(
                (await system.ActorSelection("/system/sharding/balancer-probe/*/*").Ask<ActorIdentity>(new Identify(1), TimeSpan.FromSeconds(1))).Subject));
            Assert.DoesNotContain(Directory.GetFileSystemEntries(Environment.CurrentDirectory), e => !workingDirectoryBefore.Contains(e));
        }
        finally
        {
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(20));
        }
    }

    [Fact]
    public async Task NodeWithoutTheRole_RefusesToStartBalancer_WithAClearReason()
    {
        var system = ActorSystem.Create("orders", ConfigurationFactory.ParseString("""
            akka.cluster.roles = [orders]
            balancer.node.role = lb
            """).WithFallback(BalancerHost.ClusterOfOne));
        try
        {
            var error = Assert.Throws<ConfigurationException>(() => BalancerExtension.Get(system));
            Assert.Contains("balancer.node.role = \"lb\" but this node's akka.cluster.roles are [orders]", error.Message);
        }
        finally
        {
            await system.Terminate();
        }
    }

    [Fact]
    public async Task AkkaHosting_WithBalancer_StartsWithTheHost_RegistersTheRoot_AndInjectsTheClient()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        var options = new BalancerOptions { StartFrontends = false };
        options.Pools["inventory"] = new BalancerPoolOptions { Algorithm = "least-connections" };
        foreach (var backend in backends.Backends)
        {
            options.Pools["inventory"].Backends[backend.Name] = $"127.0.0.1:{backend.Port}";
        }
        using var host = new HostBuilder()
            .ConfigureServices(services =>
            {
                services.AddAkka("orders", builder => builder
                    .AddHocon(BalancerHost.ClusterOfOne, HoconAddMode.Append)
                    .AddStartup((system, _) => Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress))
                    .WithBalancer(options));
                services.AddBalancerClient();
            })
            .Build();
        await host.StartAsync();
        try
        {
            var registry = host.Services.GetRequiredService<ActorRegistry>();
            var root = await registry.GetAsync<BalancerExtension>();
            Assert.Equal("/system/balancer", root.Path.ToStringWithoutAddress());
            var client = host.Services.GetRequiredService<IBalancerClient>();
            Assert.Equal("least-connections", client.View("inventory").Settings.Algorithm);
            await Eventually.Holds(() => Assert.Equal(2, client.View("inventory").Routable.Length));
            var lease = client.Select("inventory");
            Assert.True(lease.HasBackend);
            lease.Complete(BackendOutcome.Success);
        }
        finally
        {
            await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    [Fact]
    public async Task AspNetCoreApp_SettingsFromAppsettingsJson_ReadinessCheck_AndANamedHttpClientThatCallsThePool()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        // appsettings.json as an app would ship it: the balancer section spells every key as HOCON does.
        var appsettings = $$"""
            {
              "balancer": {
                "pools": {
                  "inventory": {
                    "algorithm": "round-robin",
                    "retries": "2",
                    "slow-start": "0s",
                    "health-check": { "interval": "200ms", "fast-interval": "200ms", "down-interval": "200ms", "timeout": "150ms", "rise": "1", "fall": "1", "path": "/healthz" },
                    "passive": { "consecutive-failures": "3" },
                    "backends": {
                      "a": "127.0.0.1:{{backends["a"].Port}}",
                      "b": { "address": "127.0.0.1:{{backends["b"].Port}}", "weight": "50" },
                      "c": "127.0.0.1:{{backends["c"].Port}}"
                    }
                  }
                }
              }
            }
            """;
        var configuration = new ConfigurationBuilder()
            .AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(appsettings)))
            .Build();
        using var host = new HostBuilder()
            .ConfigureServices(services =>
            {
                services.AddAkka("orders", builder => builder
                    .AddHocon(BalancerHost.ClusterOfOne, HoconAddMode.Append)
                    .AddStartup((system, _) => Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress))
                    .WithBalancer(configuration.GetSection("balancer")));
                services.AddHealthChecks().AddBalancer();
                services.AddHttpClient("inventory").AddBalancer();
            })
            .Build();
        await host.StartAsync();
        try
        {
            var system = host.Services.GetRequiredService<ActorSystem>();
            var settings = BalancerExtension.Get(system).Settings.Pools.Single();
            Assert.Equal((2, 3, 50), (settings.Retries, settings.Passive.ConsecutiveFailures, settings.Backends.Single(b => b.Name == "b").Weight));
            // WithBalancer's cluster tuning sits under the host's settings: failure detection in seconds, a frame that fits sessions.
            Assert.Equal(TimeSpan.FromMilliseconds(1500), system.Settings.Config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
            Assert.Equal(4 * 1024 * 1024, system.Settings.Config.GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size"));

            var health = host.Services.GetRequiredService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>();
            await Eventually.Holds(async () => Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, (await health.CheckHealthAsync()).Status), TimeSpan.FromSeconds(20));

            // A subscriber to the events learns the current state first, without asking.
            using (var subscribed = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                var first = new List<Balancer.Management.NotableEvent>();
                await foreach (var notable in BalancerExtension.Get(system).Client.Events(subscribed.Token))
                {
                    first.Add(notable);
                    if (first.Count == 4)
                    {
                        break;
                    }
                }
                Assert.Equal(["member-up", "backend-up", "backend-up", "backend-up"], first.Select(e => e.Kind));
                Assert.All(first, e => Assert.EndsWith("(current state)", e.Text));
            }

            // The named client reaches the pool by its name, spreads calls and steps around a dead backend.
            var http = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("inventory");
            var answered = new List<string>();
            for (var i = 0; i < 12; i++)
            {
                answered.Add((await http.GetStringAsync("/items/42")).Split(' ')[0]);
            }
            Assert.Equal(["a", "b", "c"], answered.Distinct().Order());
            await backends["c"].StopAsync();
            for (var i = 0; i < 12; i++)
            {
                Assert.NotEqual("c", (await http.GetStringAsync("/items/42")).Split(' ')[0]);
            }

            // Every backend failing its health check: the app is degraded, not ready to route.
            using var control = new HttpClient();
            foreach (var name in new[] { "a", "b" })
            {
                await control.PostAsync($"http://127.0.0.1:{backends[name].Port}/control/health?ok=false", null);
            }
            await Eventually.Holds(async () =>
            {
                var report = await health.CheckHealthAsync();
                Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Degraded, report.Status);
                Assert.Contains("too few healthy backends (panic, or none to route to) in: inventory", report.Entries["balancer"].Description);
            }, TimeSpan.FromSeconds(10));
        }
        finally
        {
            await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    [Fact]
    public async Task TwoEmbeddedNodes_DownOnOneIsAvoidedByTheOther_AndAStickyKeyPicksTheSameBackendOnBoth()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        var nodes = await InProcessCluster.StartAsync("orders", ConfigurationFactory.ParseString(Pool(backends, "affinity.mode = \"header:X-Customer\"")), nodes: 2);
        try
        {
            var clients = nodes.Select(n => BalancerExtension.Get(n).Client).ToList();
            await Eventually.Holds(() => Assert.All(clients, c => Assert.Equal(3, c.View("inventory").Routable.Length)));

            // Sticky: keys pinned through node 0 select the same backends on node 1.
            var pinned = new Dictionary<string, string>();
            for (var i = 0; i < 30; i++)
            {
                var lease = clients[0].Select("inventory", $"customer-{i}");
                lease.Complete(BackendOutcome.Success);
                pinned[$"customer-{i}"] = lease.Backend!.Name;
            }
            Assert.Equal(3, pinned.Values.Distinct().Count());
            await Eventually.Holds(() =>
            {
                foreach (var (key, backend) in pinned)
                {
                    var lease = clients[1].Select("inventory", key);
                    lease.Complete(BackendOutcome.Success);
                    Assert.Equal(backend, lease.Backend!.Name);
                }
            });

            // Backend b fails its health check; whichever node probes it, the other avoids it too.
            using var http = new HttpClient();
            await http.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
            await Eventually.Holds(() => Assert.All(clients, c => Assert.DoesNotContain(c.View("inventory").Routable, b => b.Name == "b")), TimeSpan.FromSeconds(10));
            for (var i = 0; i < 30; i++)
            {
                var lease = clients[1].Select("inventory");
                lease.Complete(BackendOutcome.Success);
                Assert.NotEqual("b", lease.Backend!.Name);
            }
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.Terminate()));
        }
    }

    [Fact]
    public async Task HttpClientHandler_SpreadsLoad_SkipsADeadBackendWithoutAFailedCall_AndHonoursAffinityKeys()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var node = await BalancerHost.StartAsync(Pool(backends, "health-check.kind = none"));
        using var http = new HttpClient(new BalancerHttpHandler(node.Extension.Client) { InnerHandler = new SocketsHttpHandler { UseProxy = false } })
        {
            Timeout = TimeSpan.FromSeconds(10),
        };

        async Task<string> CallAsync(string? key = null)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://inventory/items/42");
            if (key is not null)
            {
                request.Options.Set(BalancerHttpHandler.AffinityKey, key);
            }
            using var response = await http.SendAsync(request);
            response.EnsureSuccessStatusCode();
            Assert.Equal("http://inventory/items/42", response.RequestMessage!.RequestUri!.ToString());
            return response.Headers.GetValues("X-Backend").Single();
        }

        var spread = new List<string>();
        for (var i = 0; i < 30; i++)
        {
            spread.Add(await CallAsync());
        }
        Assert.All(new[] { "a", "b", "c" }, name => Assert.Equal(10, spread.Count(s => s == name)));

        var sticky = new Dictionary<string, string>();
        for (var i = 0; i < 20; i++)
        {
            sticky[$"user-{i}"] = await CallAsync($"user-{i}");
        }
        foreach (var (key, backend) in sticky)
        {
            Assert.Equal(backend, await CallAsync(key));
        }

        // Backend c dies; no probe runs here, so only the handler's retry can save the calls.
        await backends["c"].StopAsync();
        for (var i = 0; i < 30; i++)
        {
            Assert.NotEqual("c", await CallAsync());
        }
        foreach (var (key, backend) in sticky.Where(s => s.Value != "c"))
        {
            Assert.Equal(backend, await CallAsync(key));
        }
        var unknown = await Assert.ThrowsAsync<KeyNotFoundException>(() => http.GetAsync("http://nowhere/"));
        Assert.Contains("no pool \"nowhere\" (pools: inventory)", unknown.Message);
    }

    /// <summary>A user message with the user's own serializer.</summary>
    public sealed record PlaceOrder(int Id);

    public sealed class OrderSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
    {
        public override int Identifier => 4242;

        public override string Manifest(object o) => "place-order";

        public override byte[] ToBinary(object obj) => Encoding.UTF8.GetBytes(((PlaceOrder)obj).Id.ToString());

        public override object FromBinary(byte[] bytes, string manifest) => new PlaceOrder(int.Parse(Encoding.UTF8.GetString(bytes)));
    }

    private sealed class OrderDesk : ReceiveActor
    {
        public OrderDesk() => Receive<PlaceOrder>(order => Sender.Tell($"placed {order.Id}"));
    }
}
