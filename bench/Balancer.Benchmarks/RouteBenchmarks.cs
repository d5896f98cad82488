using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Akka.Configuration;
using Balancer.Frontends.Http;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Routing.LoadBalancing;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Balancer.Benchmarks;

/// <summary>
/// The per-request cost of matching an HTTP frontend's routes: a table of 50 routes over 20 host
/// names, wildcard suffixes, path prefixes and regular expressions, methods and headers. Target:
/// under 100 ns and no allocation. The requests are Kestrel's own, parsed from the wire and held in
/// flight while they are matched, so header lookups cost what they cost a frontend (Kestrel's
/// header collection finds Host in a field; ASP.NET Core's DefaultHttpContext would look it up in a
/// dictionary).
/// </summary>
[MemoryDiagnoser]
public class RouteBenchmarks
{
    private RouteTable _table = null!;
    private HttpRequest _lastOfABusyHost = null!;
    private HttpRequest _wildcard = null!;
    private HttpRequest _regexAndHeader = null!;
    private HttpRequest _noMatch = null!;
    private WebApplication _kestrel = null!;
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<string, TaskCompletionSource<HttpRequest>> _held = new();
    private HttpClient _client = null!;
    private readonly List<Task> _inFlight = new();

    [GlobalSetup]
    public void Setup()
    {
        StartKestrel();
        var routes = new StringBuilder();
        for (var i = 0; i < 50; i++)
        {
            var host = i < 40 ? $"h{i % 20}.example.com" : $"*.wild{i % 5}.example.org";
            var condition = (i % 5) switch
            {
                0 => $"path-prefix = \"/api{i}/\"",
                1 => $"path = \"/exact/{i}\"",
                2 => $"path-regex = \"^/items/[0-9]+/r{i}$\"",
                3 => $"path-prefix = \"/m{i}/\", methods = [GET, HEAD]",
                _ => $"path-prefix = \"/h{i}/\", headers = [\"X-Tenant=t{i}\"]",
            };
            routes.Append($"{{ name = r{i}, hosts = [\"{host}\"], {condition}, pool = p{i % 4} }}\n");
        }
        var settings = BalancerSettings.Create(ConfigurationFactory.ParseString($$"""
            balancer.pools { p0.backends.a = "127.0.0.1:9001", p1.backends.a = "127.0.0.1:9002", p2.backends.a = "127.0.0.1:9003", p3.backends.a = "127.0.0.1:9004" }
            balancer.frontends.web {
              bind = "127.0.0.1:8080"
              pool = p0
              routes = [
            {{routes}}
              ]
            }
            """));
        var registry = new PoolRegistry();
        foreach (var pool in settings.Pools)
        {
            registry.Set(new PoolHandle(PoolSnapshotBuilder.Build(1, pool, _ => BackendRuntimeState.Default, _ => new BackendCounters(), new AlgorithmState())));
        }
        var frontend = settings.Frontends.Single();
        _table = RouteTable.Build(frontend, registry, registry.Find("p0")!);
        // h19.example.com has routes 19 and 39; 39 has a path prefix and a header condition.
        _lastOfABusyHost = Hold("h19.example.com", "/h39/x", "GET", ("X-Tenant", "t39"));
        _wildcard = Hold("shop.eu.wild1.example.org", "/exact/41", "GET");
        _regexAndHeader = Hold("h2.example.com", "/items/12345/r22", "POST");
        _noMatch = Hold("unknown.example.net", "/anything", "GET");
        Check(_lastOfABusyHost, "r39");
        Check(_wildcard, "r41");
        Check(_regexAndHeader, "r22");
        Check(_noMatch, "");
    }

    private void Check(HttpRequest request, string route)
    {
        var matched = _table.Match(request).Name;
        if (matched != route)
        {
            throw new InvalidOperationException($"{request.Host}{request.Path} matched \"{matched}\", expected \"{route}\"");
        }
    }

    /// <summary>A Kestrel on a loopback port whose requests wait, in flight, until the benchmark ends.</summary>
    private void StartKestrel()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        _kestrel = builder.Build();
        _kestrel.Run(async context =>
        {
            _held[context.Request.Headers["X-Case"].ToString()].SetResult(context.Request);
            await _release.Task;
        });
        _kestrel.StartAsync().GetAwaiter().GetResult();
        // The requests stay in flight for as long as BenchmarkDotNet measures.
        _client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = new Uri(_kestrel.Urls.First()), Timeout = Timeout.InfiniteTimeSpan };
    }

    private HttpRequest Hold(string host, string path, string method, params (string Name, string Value)[] headers)
    {
        var name = host + path;
        var held = _held.GetOrAdd(name, _ => new TaskCompletionSource<HttpRequest>(TaskCreationOptions.RunContinuationsAsynchronously));
        var request = new HttpRequestMessage(new HttpMethod(method), path);
        request.Headers.Host = host;
        request.Headers.Add("X-Case", name);
        foreach (var (header, value) in headers)
        {
            request.Headers.Add(header, value);
        }
        _inFlight.Add(_client.SendAsync(request));
        return held.Task.WaitAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _release.SetResult();
        Task.WaitAll(_inFlight.ToArray(), TimeSpan.FromSeconds(10));
        _client.Dispose();
        _kestrel.StopAsync().GetAwaiter().GetResult();
    }

    /// <summary>The last of a host's routes, with a path prefix and a header condition.</summary>
    [Benchmark]
    public object LastRouteOfABusyHost() => _table.Match(_lastOfABusyHost);

    /// <summary>A host below a wildcard, exact path.</summary>
    [Benchmark]
    public object WildcardHost() => _table.Match(_wildcard);

    /// <summary>A regular expression on the path.</summary>
    [Benchmark]
    public object PathRegex() => _table.Match(_regexAndHeader);

    /// <summary>No route matches: the frontend's pool.</summary>
    [Benchmark]
    public object NoMatch() => _table.Match(_noMatch);
}
