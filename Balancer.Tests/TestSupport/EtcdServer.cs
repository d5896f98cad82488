using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A real etcd (Debian's etcd-server) on free loopback ports with a data directory of its own:
/// stopped and started again on the same data, as an outage does; killed by PID and its directory
/// removed at the end.
/// </summary>
internal sealed class EtcdServer : IAsyncDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("balancer-etcd-").FullName;
    private readonly int _peerPort = FreePort();
    private Process? _process;

    private EtcdServer() => ClientPort = FreePort();

    /// <summary>The port clients use.</summary>
    public int ClientPort { get; }

    /// <summary>Its client URL.</summary>
    public string Url => $"http://127.0.0.1:{ClientPort}";

    public static async Task<EtcdServer> StartAsync()
    {
        var server = new EtcdServer();
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>Starts it (again, on the same data) and waits until it answers.</summary>
    public async Task StartAgainAsync()
    {
        var info = new ProcessStartInfo("etcd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[]
        {
            "--name", "test", "--data-dir", Path.Combine(_directory, "data"),
            "--listen-client-urls", Url, "--advertise-client-urls", Url,
            "--listen-peer-urls", $"http://127.0.0.1:{_peerPort}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{_peerPort}",
            "--initial-cluster", $"test=http://127.0.0.1:{_peerPort}", "--log-level", "error",
        })
        {
            info.ArgumentList.Add(argument);
        }
        _process = Process.Start(info) ?? throw new InvalidOperationException("could not start etcd");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if ((await http.GetAsync($"{Url}/health")).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (deadline.Elapsed > TimeSpan.FromSeconds(20) || _process.HasExited)
            {
                throw new InvalidOperationException($"etcd did not come up on {Url}");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>SIGKILL, and wait until it is gone: the outage begins.</summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
        }
        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
