using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Balancer.Configuration;
using Balancer.Health;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Health;

/// <summary>HealthProbe against a real Kestrel backend on port 0, reporting to a TestProbe.</summary>
[Collection(SerialCollection.Name)]
public class HealthProbeSpecs : Akka.TestKit.Xunit2.TestKit
{
    private static readonly HttpMessageInvoker Client = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero });

    public HealthProbeSpecs() : base(BalancerHost.ClusterOfOne)
    {
    }

    [Fact]
    public async Task HttpCheck_ReportsDownAfterFallAndUpAfterRise()
    {
        await using var backends = await BackendSet.StartAsync("a");
        var router = CreateTestProbe();
        var settings = HealthCheck("kind = http\ninterval = 100ms\nfast-interval = 50ms\ntimeout = 100ms\nrise = 2\nfall = 2");
        Sys.ActorOf(HealthProbe.Props("app", Backend(backends["a"].Port), settings, router, Client));
        // A new probe reports its first verdict, whatever it is.
        Assert.True(router.ExpectMsg<HealthProbe.Verdict>(TimeSpan.FromSeconds(3)).Up);

        using var http = new HttpClient();
        await http.PostAsync($"http://127.0.0.1:{backends["a"].Port}/control/health?ok=false", null);
        var down = router.ExpectMsg<HealthProbe.Verdict>(TimeSpan.FromSeconds(3));
        Assert.False(down.Up);
        Assert.Equal("2 check(s) failed, last: HTTP 503 (expected 200-399)", down.Reason);

        await http.PostAsync($"http://127.0.0.1:{backends["a"].Port}/control/health?ok=true", null);
        var up = router.ExpectMsg<HealthProbe.Verdict>(TimeSpan.FromSeconds(3));
        Assert.True(up.Up);
        Assert.StartsWith("2 check(s) passed (GET /healthz,", up.Reason);
    }

    [Fact]
    public async Task HttpCheck_ExpectBodyMismatch_IsAFailure()
    {
        await using var backends = await BackendSet.StartAsync("a");
        var router = CreateTestProbe();
        var settings = HealthCheck("kind = http\ninterval = 100ms\nfast-interval = 50ms\ntimeout = 100ms\nfall = 1\nexpect-body = \"ready\"");
        Sys.ActorOf(HealthProbe.Props("app", Backend(backends["a"].Port), settings, router, Client));
        var down = router.ExpectMsg<HealthProbe.Verdict>(TimeSpan.FromSeconds(3));
        Assert.Equal("1 check(s) failed, last: body lacks \"ready\"", down.Reason);
    }

    [Fact]
    public void TcpCheck_ClosedPort_ReportsConnectionRefused()
    {
        var router = CreateTestProbe();
        var settings = HealthCheck("kind = tcp\ninterval = 100ms\nfast-interval = 50ms\ntimeout = 100ms\nfall = 2");
        Sys.ActorOf(HealthProbe.Props("app", Backend(Ports.Closed()), settings, router, Client));
        var down = router.ExpectMsg<HealthProbe.Verdict>(TimeSpan.FromSeconds(3));
        Assert.False(down.Up);
        Assert.Contains("refused", down.Reason, StringComparison.OrdinalIgnoreCase);
    }

    private static HealthCheckSettings HealthCheck(string hocon) =>
        TestPools.Pool($"health-check {{\n{hocon}\n}}\nbackends.x = \"127.0.0.1:1\"").HealthCheck;

    private static BackendSettings Backend(int port) => new("a", new EndpointAddress("127.0.0.1", port), 100);
}

/// <summary>PoolRouter's passive ejection and slow start on virtual time (Akka.TestKit's TestScheduler).</summary>
[Collection(SerialCollection.Name)]
public class PoolRouterSpecs : Akka.TestKit.Xunit2.TestKit
{
    // The node never joins: PoolRouter's replicated writes complete locally, and nothing but the
    // test moves the virtual clock.
    public PoolRouterSpecs() : base(ConfigurationFactory.ParseString("""
        akka.scheduler.implementation = "Akka.TestKit.TestScheduler, Akka.TestKit"
        """).WithFallback(BalancerHost.ClusterOfOne))
    {
    }

    private TestScheduler Scheduler => (TestScheduler)Sys.Scheduler;

    [Fact]
    public void PassiveEjection_EndsAfterEjectionTime_ThenSlowStartRamps()
    {
        var registry = new PoolRegistry();
        var settings = TestPools.Pool("""
            health-check.kind = none
            passive { consecutive-failures = 3, ejection = 10s, max-ejection = 40s }
            slow-start = 20s
            backends { a = "127.0.0.1:1", b = "127.0.0.1:2", c = "127.0.0.1:3" }
            """);
        var events = CreateTestProbe();
        Sys.EventStream.Subscribe(events, typeof(BackendHealthChanged));
        registry.Set(new PoolHandle(TestPools.Snapshot(settings)));
        var router = Sys.ActorOf(PoolRouter.Props(settings, registry.Find("app")!, TimeSpan.FromSeconds(3)));
        var handle = registry.Find("app")!;
        // The router's first snapshot carries the counters it watches: read them only once it is published.
        AwaitCondition(() => handle.Started.IsCompleted);

        var counters = handle.Snapshot.Backends.Single(b => b.Name == "b").Counters;
        for (var i = 0; i < 3; i++)
        {
            counters.Start();
            counters.ConnectFailed();
        }
        var down = events.ExpectMsg<BackendHealthChanged>(TimeSpan.FromSeconds(3));
        Assert.Equal(("b", BackendHealth.Down), (down.Backend, down.New));
        Assert.Equal("passive: 3 consecutive failures, ejected for 10s (ejection #1)", down.Reason);
        AwaitAssert(() => Assert.DoesNotContain(handle.Snapshot.Routable, r => r.Name == "b"));

        Scheduler.Advance(TimeSpan.FromSeconds(9));
        events.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.DoesNotContain(handle.Snapshot.Routable, r => r.Name == "b");

        Scheduler.Advance(TimeSpan.FromSeconds(1.2));
        var up = events.ExpectMsg<BackendHealthChanged>(TimeSpan.FromSeconds(3));
        Assert.Equal(("b", BackendHealth.Up, "passive: ejection ended"), (up.Backend, up.New, up.Reason));
        AwaitAssert(() => Assert.InRange(handle.Snapshot.Routable.Single(r => r.Name == "b").SlowStartFactor, 0.001, 0.05));

        Scheduler.Advance(TimeSpan.FromSeconds(10));
        AwaitAssert(() => Assert.InRange(handle.Snapshot.Routable.Single(r => r.Name == "b").SlowStartFactor, 0.45, 0.55));
        Scheduler.Advance(TimeSpan.FromSeconds(11));
        AwaitAssert(() => Assert.Equal(1.0, handle.Snapshot.Routable.Single(r => r.Name == "b").SlowStartFactor));

        // Failing again soon after: the next ejection is twice as long.
        for (var i = 0; i < 3; i++)
        {
            counters.Start();
            counters.ConnectFailed();
        }
        Assert.Equal("passive: 3 consecutive failures, ejected for 20s (ejection #2)", events.ExpectMsg<BackendHealthChanged>(TimeSpan.FromSeconds(3)).Reason);
        Sys.Stop(router);
    }

    [Fact]
    public void AdminState_Drain_LeavesRotationAndIsAnnounced()
    {
        var registry = new PoolRegistry();
        var settings = TestPools.Pool("health-check.kind = none\nbackends { a = \"127.0.0.1:1\", b = \"127.0.0.1:2\" }");
        var events = CreateTestProbe();
        Sys.EventStream.Subscribe(events, typeof(BackendAdminStateChanged));
        registry.Set(new PoolHandle(TestPools.Snapshot(settings)));
        var router = Sys.ActorOf(PoolRouter.Props(settings, registry.Find("app")!, TimeSpan.FromSeconds(3)));
        router.Tell(new PoolRouter.SetAdminState("a", BackendAdminState.Drain));
        ExpectMsg<Status.Success>();
        Assert.Equal(new BackendAdminStateChanged("app", "a", BackendAdminState.Ready, BackendAdminState.Drain, 100), events.ExpectMsg<BackendAdminStateChanged>());
        Assert.Equal(["b"], registry.Find("app")!.Snapshot.Routable.Select(b => b.Name));

        router.Tell(new PoolRouter.SetWeight("b", 20000));
        Assert.Contains("weight must be 0..10000", ExpectMsg<Status.Failure>().Cause.Message);
    }
}
