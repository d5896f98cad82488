using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Balancer.Health;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Health;

/// <summary>Health behaviour of a balancer in front of real Kestrel backends under a bounded client loop.</summary>
[Collection(SerialCollection.Name)]
public class HealthIntegrationTests
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

    private static string Config(BackendSet backends, string pool) => $$"""
        balancer {
          frontends.web { bind = "127.0.0.1:0", pool = app }
          pools.app {
            {{pool}}
            {{backends.Hocon()}}
          }
        }
        """;

    [Fact]
    public async Task ActiveCheck_FailingBackend_LeavesWithinFallTimesIntervalAndReturnsAfterRise()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check { interval = 200ms, fast-interval = 200ms, down-interval = 200ms, timeout = 100ms, rise = 2, fall = 2, jitter = 0% }\nslow-start = 0s"));
        var events = Subscribe(host);
        using var load = new LoadLoop(host.Uri("web"));
        await load.WaitForAsync(() => load.Count("b") > 10);

        await Client.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
        var flipped = Stopwatch.StartNew();
        var down = await events.WaitAsync(e => e.Backend == "b" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(5));
        // fall × interval + timeout + 1 s
        Assert.True(flipped.Elapsed < TimeSpan.FromMilliseconds(2 * 200 + 100 + 1000), $"took {flipped.Elapsed}");
        Assert.Contains("HTTP 503", down.Reason);
        var seenAtDown = load.Count("b");
        await Task.Delay(600);
        Assert.InRange(load.Count("b") - seenAtDown, 0, 2);

        await Client.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=true", null);
        var healed = Stopwatch.StartNew();
        await events.WaitAsync(e => e.Backend == "b" && e.New == BackendHealth.Up, TimeSpan.FromSeconds(5));
        Assert.True(healed.Elapsed < TimeSpan.FromMilliseconds(2 * 200 * 1.5 + 1000), $"took {healed.Elapsed}");
        await load.WaitForAsync(() => load.Count("b") > seenAtDown + 10);
        Assert.Equal(0, load.Failures);
    }

    [Fact]
    public async Task ActiveCheck_BackendKilled_NoClientFailureAndMarkedDown()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check { interval = 200ms, fast-interval = 100ms, timeout = 100ms, fall = 2 }\n# the probe, not passive ejection, must find it\npassive.consecutive-failures = 0"));
        var events = Subscribe(host);
        using var load = new LoadLoop(host.Uri("web"));
        await load.WaitForAsync(() => load.Count("c") > 10);
        await backends["c"].StopAsync();
        var down = await events.WaitAsync(e => e.Backend == "c" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(5));
        Assert.Contains("connection refused", down.Reason);
        var total = load.Total;
        await load.WaitForAsync(() => load.Total > total + 50);
        Assert.Equal(0, load.Failures);
    }

    [Fact]
    public async Task Passive_BackendAnswering500_EjectedThenReturns()
    {
        await using var backends = await BackendSet.StartAsync(["a", "b", "bad"], name => name == "bad" ? 1.0 : 0.0);
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check.kind = none\npassive { consecutive-failures = 3, ejection = 1s, max-ejected-percent = 50% }\nslow-start = 0s"));
        var events = Subscribe(host);
        using var load = new LoadLoop(host.Uri("web"));
        var ejected = await events.WaitAsync(e => e.Backend == "bad" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(10));
        Assert.Matches(@"^passive: \d+ consecutive failures, ejected for 1s \(ejection #1\)$", ejected.Reason);
        var failuresAtEjection = load.Failures;
        await Task.Delay(500);
        Assert.InRange(load.Failures - failuresAtEjection, 0, 2);

        var returned = await events.WaitAsync(e => e.Backend == "bad" && e.New == BackendHealth.Up, TimeSpan.FromSeconds(5));
        Assert.Equal("passive: ejection ended", returned.Reason);
        // Still failing: ejected again, for twice as long.
        var again = await events.WaitAsync(e => e.Backend == "bad" && e.New == BackendHealth.Down && e != ejected, TimeSpan.FromSeconds(10));
        Assert.Matches(@"^passive: \d+ consecutive failures, ejected for 2s \(ejection #2\)$", again.Reason);
    }

    [Fact]
    public async Task Passive_MaxEjectedPercent_KeepsMostOfThePool()
    {
        await using var backends = await BackendSet.StartAsync(["a", "b", "c", "d"], _ => 1.0);
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check.kind = none\npassive { consecutive-failures = 2, ejection = 30s, max-ejected-percent = 50% }\npanic-threshold = 0%"));
        var events = Subscribe(host);
        using var load = new LoadLoop(host.Uri("web"));
        await events.WaitAsync(e => e.New == BackendHealth.Down && events.All.Count(d => d.New == BackendHealth.Down) >= 2, TimeSpan.FromSeconds(10));
        var total = load.Total;
        await load.WaitForAsync(() => load.Total > total + 200);
        Assert.Equal(2, events.All.Count(e => e.New == BackendHealth.Down));
        Assert.Equal(2, host.Extension.Pools.Find("app")!.Snapshot.Routable.Length);
    }

    [Fact]
    public async Task Drain_KeepsOpenTcpConnectionButTakesNoNewOnes_MaintRemovesAtOnce()
    {
        using var first = new RawTcpServer();
        using var second = new RawTcpServer();
        await using var host = await BalancerHost.StartAsync($$"""
            balancer {
              frontends.raw { mode = tcp, bind = "127.0.0.1:0", pool = app }
              pools.app {
                algorithm = first
                health-check.kind = none
                backends {
                  one = "127.0.0.1:{{first.Port}}"
                  two = "127.0.0.1:{{second.Port}}"
                }
              }
            }
            """);
        using var open = await ConnectAsync(host);
        await TcpClients.AssertEchoAsync(open);
        Assert.Equal(1, first.Accepted);

        var reply = await host.Extension.PoolRouter("app").Ask<Status>(new PoolRouter.SetAdminState("one", BackendAdminState.Drain), TimeSpan.FromSeconds(5));
        Assert.IsType<Status.Success>(reply);
        using (var fresh = await ConnectAsync(host))
        {
            await TcpClients.AssertEchoAsync(fresh);
        }
        Assert.Equal(1, first.Accepted);
        Assert.Equal(1, second.Accepted);
        await TcpClients.AssertEchoAsync(open);

        await host.Extension.PoolRouter("app").Ask<Status>(new PoolRouter.SetAdminState("two", BackendAdminState.Maint), TimeSpan.FromSeconds(5));
        Assert.Empty(host.Extension.Pools.Find("app")!.Snapshot.Routable);

        var unknown = await host.Extension.PoolRouter("app").Ask<Status>(new PoolRouter.SetAdminState("three", BackendAdminState.Maint), TimeSpan.FromSeconds(5));
        Assert.Equal("pool app has no backend \"three\" (backends: one, two)", Assert.IsType<Status.Failure>(unknown).Cause.Message);
    }

    [Fact]
    public async Task Weight_ChangedAtRuntime_ShiftsTraffic()
    {
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync(Config(backends, "algorithm = weighted-round-robin\nhealth-check.kind = none"));
        await host.Extension.PoolRouter("app").Ask<Status>(new PoolRouter.SetWeight("a", 300), TimeSpan.FromSeconds(5));
        var counts = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0 };
        for (var i = 0; i < 40; i++)
        {
            using var response = await Client.GetAsync(host.Uri("web"));
            counts[response.Headers.GetValues("X-Backend").Single()]++;
        }
        Assert.Equal(30, counts["a"]);
        Assert.Equal(10, counts["b"]);
    }

    [Fact]
    public async Task SlowStart_ReturningBackendGetsWellUnderItsShareAtFirst()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check { interval = 100ms, fast-interval = 100ms, down-interval = 100ms, timeout = 100ms, rise = 1, fall = 1, jitter = 0% }\nslow-start = 20s"));
        var events = Subscribe(host);
        await Client.PostAsync($"http://127.0.0.1:{backends["c"].Port}/control/health?ok=false", null);
        await events.WaitAsync(e => e.Backend == "c" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(5));
        await Client.PostAsync($"http://127.0.0.1:{backends["c"].Port}/control/health?ok=true", null);
        await events.WaitAsync(e => e.Backend == "c" && e.New == BackendHealth.Up, TimeSpan.FromSeconds(5));

        var counts = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0 };
        for (var i = 0; i < 300; i++)
        {
            using var response = await Client.GetAsync(host.Uri("web"));
            counts[response.Headers.GetValues("X-Backend").Single()]++;
        }
        // A full share is 100 of 300; in the first seconds of a 20 s ramp it is a small fraction of that.
        Assert.InRange(counts["c"], 0, 30);
        var ramping = host.Extension.Pools.Find("app")!.Snapshot.Backends.Single(b => b.Name == "c");
        Assert.InRange(ramping.SlowStartFactor, 0.001, 0.5);
    }

    [Fact]
    public async Task Panic_TooFewHealthy_RoutesToAllButMaintenance()
    {
        await using var backends = await BackendSet.StartAsync("a", "b", "c");
        await using var host = await BalancerHost.StartAsync(Config(backends,
            "health-check { interval = 100ms, fast-interval = 100ms, timeout = 100ms, fall = 1, jitter = 0% }\npanic-threshold = 50%"));
        var events = Subscribe(host);
        await Client.PostAsync($"http://127.0.0.1:{backends["a"].Port}/control/health?ok=false", null);
        await Client.PostAsync($"http://127.0.0.1:{backends["b"].Port}/control/health?ok=false", null);
        await events.WaitAsync(e => e.Backend == "a" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(5));
        await events.WaitAsync(e => e.Backend == "b" && e.New == BackendHealth.Down, TimeSpan.FromSeconds(5));
        var snapshot = host.Extension.Pools.Find("app")!.Snapshot;
        Assert.True(snapshot.Panic);
        var seen = new HashSet<string>();
        for (var i = 0; i < 9; i++)
        {
            using var response = await Client.GetAsync(host.Uri("web"));
            seen.Add(response.Headers.GetValues("X-Backend").Single());
        }
        Assert.Equal(["a", "b", "c"], seen.Order());
    }

    private static EventRecorder Subscribe(BalancerHost host)
    {
        var recorder = new EventRecorder();
        var actor = host.System.ActorOf(Props.Create(() => new EventRecorder.Listener(recorder)));
        host.System.EventStream.Subscribe(actor, typeof(BackendHealthChanged));
        return recorder;
    }

    private static Task<Socket> ConnectAsync(BalancerHost host) => TcpClients.ConnectAsync(host.EndPoint("raw"));

    private sealed class EventRecorder
    {
        private readonly ConcurrentQueue<BackendHealthChanged> _events = new();

        public IReadOnlyList<BackendHealthChanged> All => _events.ToList();

        public async Task<BackendHealthChanged> WaitAsync(Func<BackendHealthChanged, bool> match, TimeSpan timeout)
        {
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < timeout)
            {
                var found = _events.FirstOrDefault(match);
                if (found is not null)
                {
                    return found;
                }
                await Task.Delay(20);
            }
            throw new TimeoutException($"no matching event within {timeout}; saw: {string.Join("; ", _events)}");
        }

        public sealed class Listener : ReceiveActor
        {
            public Listener(EventRecorder recorder) => Receive<BackendHealthChanged>(e => recorder._events.Enqueue(e));
        }
    }

    /// <summary>A bounded client loop (stops on dispose, at most 2 minutes) counting responses per backend.</summary>
    private sealed class LoadLoop : IDisposable
    {
        private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
        private readonly ConcurrentDictionary<string, int> _counts = new();
        private readonly Task _loop;
        private int _failures;
        private int _total;

        public LoadLoop(Uri uri)
        {
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        using var response = await Client.GetAsync(uri, _stop.Token);
                        Interlocked.Increment(ref _total);
                        if (!response.IsSuccessStatusCode)
                        {
                            Interlocked.Increment(ref _failures);
                        }
                        if (response.Headers.TryGetValues("X-Backend", out var names))
                        {
                            _counts.AddOrUpdate(names.Single(), 1, (_, c) => c + 1);
                        }
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                    }
                    catch (HttpRequestException)
                    {
                        Interlocked.Increment(ref _failures);
                    }
                }
            });
        }

        public int Failures => Volatile.Read(ref _failures);

        public int Total => Volatile.Read(ref _total);

        public int Count(string backend) => _counts.GetValueOrDefault(backend);

        public async Task WaitForAsync(Func<bool> condition)
        {
            var deadline = Stopwatch.StartNew();
            while (!condition())
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(20), "load loop did not reach the expected state");
                await Task.Delay(20);
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _loop.Wait(TimeSpan.FromSeconds(15));
            _stop.Dispose();
        }
    }
}
