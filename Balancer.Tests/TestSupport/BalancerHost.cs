using System.Net;
using Akka.Actor;
using Akka.Configuration;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A balancer in its own ActorSystem with frontends on port 0, torn down on dispose. The frontends
/// are real listeners (Kestrel, sockets), the backends real Kestrel servers.
/// </summary>
internal sealed class BalancerHost : IAsyncDisposable
{
    private BalancerHost(ActorSystem system, BalancerExtension extension)
    {
        System = system;
        Extension = extension;
    }

    public ActorSystem System { get; }

    /// <summary>A real cluster provider on a free port, joined to itself: the smallest real Balancer cluster.</summary>
    public static readonly Config ClusterOfOne = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        balancer.replication.notify-subscribers-interval = 50ms
        akka.cluster.jmx.enabled = off
        """);

    public BalancerExtension Extension { get; }

    /// <summary>A node whose cleartext HTTP frontends forward plain HTTP/1.1 requests by <paramref name="engine"/>.</summary>
    public static Task<BalancerHost> StartAsync(string balancerHocon, HttpEngine engine) =>
        StartAsync(engine == HttpEngine.Yarp ? balancerHocon + "\nbalancer.frontend-defaults.http1-fast-path = off\n" : balancerHocon);

    public static async Task<BalancerHost> StartAsync(string balancerHocon)
    {
        var config = ConfigurationFactory.ParseString(balancerHocon).WithFallback(ClusterOfOne);
        var system = ActorSystem.Create("balancer-test", config);
        try
        {
            var cluster = Akka.Cluster.Cluster.Get(system);
            cluster.Join(cluster.SelfAddress);
            var extension = BalancerExtension.Get(system);
            await extension.FrontendsStarted.WaitAsync(TimeSpan.FromSeconds(20));
            await WaitForPoolRoutersAsync(extension);
            return new BalancerHost(system, extension);
        }
        catch
        {
            await system.Terminate();
            throw;
        }
    }

    /// <summary>The routing actors and affinity stores start asynchronously: wait until each has published on its pool's handle.</summary>
    public static Task WaitForPoolRoutersAsync(BalancerExtension extension) => extension.Started.WaitAsync(TimeSpan.FromSeconds(20));

    public IPEndPoint EndPoint(string frontend) => Extension.FrontendEndPoints[frontend][0];

    /// <summary>The admin API's address (the config must set balancer.node.admin.enabled = on).</summary>
    public async Task<Uri> AdminUriAsync(string path = "/")
    {
        var admin = await Extension.AdminStarted.WaitAsync(TimeSpan.FromSeconds(20)) ?? throw new InvalidOperationException("the admin API is off");
        return new Uri($"http://{admin.EndPoint}{path}");
    }

    public Uri Uri(string frontend, string path = "/") => new($"http://{EndPoint(frontend)}{path}");

    public async ValueTask DisposeAsync()
    {
        await System.Terminate().WaitAsync(TimeSpan.FromSeconds(20));
    }
}

/// <summary>Real Kestrel backends on port 0.</summary>
internal sealed class BackendSet : IAsyncDisposable
{
    public List<Balancer.Node.Backend.DemoBackend> Backends { get; } = new();

    public static Task<BackendSet> StartAsync(params string[] names) => StartAsync(names, _ => 0);

    public static async Task<BackendSet> StartAsync(string[] names, Func<string, double> failRate)
    {
        var set = new BackendSet();
        foreach (var name in names)
        {
            var backend = new Balancer.Node.Backend.DemoBackend(name, new IPEndPoint(IPAddress.Loopback, 0), failRate: failRate(name));
            await backend.StartAsync();
            set.Backends.Add(backend);
        }
        return set;
    }

    public Balancer.Node.Backend.DemoBackend this[string name] => Backends.First(b => b.Name == name);

    /// <summary>HOCON backends { NAME = "127.0.0.1:PORT" } for every backend, plus extra raw entries.</summary>
    public string Hocon(params string[] extra) =>
        "backends {\n" + string.Join("\n", Backends.Select(b => $"  {b.Name} = \"127.0.0.1:{b.Port}\"").Concat(extra)) + "\n}";

    public async ValueTask DisposeAsync()
    {
        foreach (var backend in Backends)
        {
            await backend.DisposeAsync();
        }
    }
}

internal static class Ports
{
    /// <summary>A loopback port nothing listens on (bound then released), for refused connections.</summary>
    public static int Closed()
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

/// <summary>Which way a plain HTTP/1.1 request crosses a cleartext HTTP frontend; the HTTP tests run on both.</summary>
public enum HttpEngine
{
    /// <summary>Balancer's own HTTP/1.1 forwarding (<c>http1-fast-path = on</c>, the default).</summary>
    FastPath,
    /// <summary>Kestrel and YARP (<c>http1-fast-path = off</c>).</summary>
    Yarp,
}
