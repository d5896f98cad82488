using System.Diagnostics;
using System.Net;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A network of hosts for process tests: one Linux network namespace per host, each with one
/// interface on a bridge that lives in a namespace of its own, addressed in the benchmarking range
/// 198.18.0.0/24. The test process reaches every host through one more interface on the bridge
/// (198.18.0.254), and sends nothing anywhere else. Faults are made on the hosts' own routes and
/// filters: a blackhole route cuts a host from another (one direction or both; clients still reach
/// it), an nftables table drops a share of its cluster traffic. Everything is named after this test
/// process's PID, and removed on dispose, also when the test failed; namespaces left by a test
/// process that died are removed by the next one. Needs root (CI runs as root).
/// </summary>
internal sealed class TestNetwork : IAsyncDisposable
{
    private const string Subnet = "198.18.0";
    private static int _instances;
    private readonly string _prefix;
    private readonly string _tag;
    private readonly List<string> _namespaces = new();
    private readonly string _testInterface;

    private TestNetwork(string prefix, string tag)
    {
        _prefix = prefix;
        _tag = tag;
        _testInterface = $"{tag}t";
    }

    /// <summary>The address the test process has on the network.</summary>
    public static IPAddress TestAddress => IPAddress.Parse($"{Subnet}.254");

    /// <summary>The address of host <paramref name="index"/> (1-253).</summary>
    public static IPAddress Address(int index) => IPAddress.Parse($"{Subnet}.{index}");

    /// <summary>The namespace of host <paramref name="index"/>, for <c>ip netns exec</c>.</summary>
    public string Namespace(int index) => $"{_prefix}-h{index}";

    /// <summary>Why this machine cannot run namespace tests, or null when it can.</summary>
    public static string? Unavailable()
    {
        if (Environment.UserName != "root" && !string.Equals(Environment.GetEnvironmentVariable("USER"), "root", StringComparison.Ordinal))
        {
            return "namespace tests need root (CI runs as root)";
        }
        return File.Exists("/usr/sbin/ip") || File.Exists("/sbin/ip") || File.Exists("/usr/bin/ip") ? null : "iproute2 is not installed (apt-get install iproute2)";
    }

    /// <summary>Creates hosts <paramref name="hosts"/> (their indexes, 1-253) on one bridge.</summary>
    public static async Task<TestNetwork> CreateAsync(params int[] hosts)
    {
        RemoveLeftovers();
        var instance = Interlocked.Increment(ref _instances);
        // Interface names are at most 15 characters: a short tag, unique per process and network.
        var tag = $"bt{Environment.ProcessId % 0x10000:x4}{instance % 16:x}";
        var network = new TestNetwork($"balancer-test-{Environment.ProcessId}-{instance}", tag);
        try
        {
            var bridge = $"{network._prefix}-switch";
            await network.AddNamespaceAsync(bridge);
            await RunAsync("ip", "netns", "exec", bridge, "ip", "link", "add", "br0", "type", "bridge");
            await RunAsync("ip", "netns", "exec", bridge, "ip", "link", "set", "br0", "up");
            foreach (var host in hosts)
            {
                var ns = network.Namespace(host);
                await network.AddNamespaceAsync(ns);
                await network.PlugAsync(bridge, $"{tag}h{host}", ns);
                await RunAsync("ip", "netns", "exec", ns, "ip", "addr", "add", $"{Address(host)}/24", "dev", $"{tag}h{host}");
                await RunAsync("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up");
            }
            // The test process's own interface, in its own namespace.
            await RunAsync("ip", "link", "add", network._testInterface, "type", "veth", "peer", "name", $"{tag}T");
            await RunAsync("ip", "link", "set", $"{tag}T", "netns", bridge);
            await RunAsync("ip", "netns", "exec", bridge, "ip", "link", "set", $"{tag}T", "master", "br0", "up");
            await RunAsync("ip", "addr", "add", $"{TestAddress}/24", "dev", network._testInterface);
            await RunAsync("ip", "link", "set", network._testInterface, "up");
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    private async Task AddNamespaceAsync(string name)
    {
        await RunAsync("ip", "netns", "add", name);
        _namespaces.Add(name);
    }

    /// <summary>A veth pair: <paramref name="name"/> in <paramref name="ns"/>, its peer on the bridge.</summary>
    private async Task PlugAsync(string bridge, string name, string ns)
    {
        var peer = name + "p";
        await RunAsync("ip", "link", "add", name, "type", "veth", "peer", "name", peer);
        await RunAsync("ip", "link", "set", name, "netns", ns);
        await RunAsync("ip", "link", "set", peer, "netns", bridge);
        await RunAsync("ip", "netns", "exec", bridge, "ip", "link", "set", peer, "master", "br0", "up");
        await RunAsync("ip", "netns", "exec", ns, "ip", "link", "set", name, "up");
    }

    /// <summary>Host <paramref name="from"/> can no longer send to host <paramref name="to"/> (TCP to it fails both ways).</summary>
    public Task CutAsync(int from, int to) =>
        RunAsync("ip", "netns", "exec", Namespace(from), "ip", "route", "add", "blackhole", $"{Address(to)}/32");

    /// <summary>Undoes <see cref="CutAsync"/>.</summary>
    public Task HealAsync(int from, int to) =>
        RunAsync("ip", "netns", "exec", Namespace(from), "ip", "route", "del", "blackhole", $"{Address(to)}/32");

    /// <summary>
    /// A lossy link between the nodes: host <paramref name="host"/> drops <paramref name="percent"/> %
    /// of the cluster traffic (TCP port <paramref name="port"/>, either end) it sends and as much of
    /// what it receives, at random (an nftables table of its own, in the host's namespace; counted).
    /// Latency comes from a <see cref="DelayedLink"/>, since not every kernel has <c>tc netem</c>.
    /// </summary>
    public async Task LoseAsync(int host, int percent, int port)
    {
        var ns = Namespace(host);
        await RunAsync("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "balancer_test_loss");
        foreach (var (chain, hook) in new[] { ("sent", "output"), ("received", "input") })
        {
            await RunAsync("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "balancer_test_loss", chain, $"{{ type filter hook {hook} priority 0; }}");
            foreach (var end in new[] { "dport", "sport" })
            {
                await RunAsync("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "balancer_test_loss", chain,
                    "tcp", end, port.ToString(), "numgen", "random", "mod", "100", "<", percent.ToString(), "counter", "drop");
            }
        }
    }

    /// <summary>How many packets <see cref="LoseAsync"/> has dropped on host <paramref name="host"/>.</summary>
    public async Task<long> DroppedAsync(int host)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in new[] { "netns", "exec", Namespace(host), "nft", "list", "table", "inet", "balancer_test_loss" })
        {
            info.ArgumentList.Add(argument);
        }
        using var process = Process.Start(info)!;
        var listing = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return System.Text.RegularExpressions.Regex.Matches(listing, @"counter packets (\d+)").Sum(m => long.Parse(m.Groups[1].Value));
    }

    /// <summary>Undoes <see cref="LoseAsync"/>.</summary>
    public Task RestoreAsync(int host) =>
        RunAsync("ip", "netns", "exec", Namespace(host), "nft", "delete", "table", "inet", "balancer_test_loss");

    public async ValueTask DisposeAsync()
    {
        // Deleting a namespace deletes the interfaces in it, and with them their veth peers.
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            await RunAsync(["ip", "netns", "delete", ns], check: false);
        }
        await RunAsync(["ip", "link", "delete", _testInterface], check: false);
    }

    /// <summary>Namespaces of test processes that are gone (killed before they could clean up).</summary>
    private static void RemoveLeftovers()
    {
        if (!Directory.Exists("/run/netns"))
        {
            return;
        }
        foreach (var path in Directory.GetFiles("/run/netns", "balancer-test-*"))
        {
            var parts = Path.GetFileName(path).Split('-');
            if (parts.Length > 2 && int.TryParse(parts[2], out var pid) && pid != Environment.ProcessId && !File.Exists($"/proc/{pid}/status"))
            {
                RunAsync(["ip", "netns", "delete", Path.GetFileName(path)], check: false).Wait(TimeSpan.FromSeconds(10));
            }
        }
    }

    internal static Task RunAsync(params string[] command) => RunAsync(command, check: true);

    internal static async Task RunAsync(string[] command, bool check)
    {
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in command.Skip(1))
        {
            info.ArgumentList.Add(argument);
        }
        using var process = Process.Start(info)!;
        var errors = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch (TimeoutException)
        {
            process.Kill();
            if (check)
            {
                throw new TimeoutException($"{string.Join(' ', command)}: no answer in 20 s");
            }
            return;
        }
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{string.Join(' ', command)}: exit {process.ExitCode}: {(await errors).Trim()}");
        }
    }
}
