using System.Diagnostics;

namespace Balancer.Node.Demo;

/// <summary>
/// The etcd of <c>balancer demo --etcd</c>: Debian's etcd-server on 127.0.0.1:2379 (peers :2380)
/// with its data in the demo's state folder; stopped by PID when the demo stops.
/// </summary>
internal sealed class EtcdProcess : IAsyncDisposable
{
    public const string Url = "http://127.0.0.1:2379";

    private readonly Process _process;

    private EtcdProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    /// <summary>Starts etcd and waits until it answers; a line saying why when it cannot.</summary>
    public static async Task<EtcdProcess> StartAsync(string dataDirectory, string logPath, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("etcd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[]
        {
            "--name", "demo", "--data-dir", dataDirectory,
            "--listen-client-urls", Url, "--advertise-client-urls", Url,
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "demo=http://127.0.0.1:2380",
        })
        {
            info.ArgumentList.Add(argument);
        }
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("etcd did not start");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new UsageException("--etcd needs etcd on the PATH (Debian: apt-get install etcd-server)");
        }
        var log = new StreamWriter(logPath) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => Write(log, e.Data);
        process.ErrorDataReceived += (_, e) => Write(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.Exited += (_, _) => log.Dispose();
        process.EnableRaisingEvents = true;
        var etcd = new EtcdProcess(process);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var waited = Stopwatch.StartNew();
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if ((await http.GetAsync($"{Url}/health", cancellationToken)).IsSuccessStatusCode)
                {
                    return etcd;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (process.HasExited || waited.Elapsed > TimeSpan.FromSeconds(20))
            {
                await etcd.DisposeAsync();
                throw new InvalidOperationException($"etcd did not come up on {Url} (port 2379 or 2380 taken?); its log: {logPath}");
            }
            await Task.Delay(100, cancellationToken).ContinueWith(_ => { });
        }
        await etcd.DisposeAsync();
        throw new OperationCanceledException();
    }

    private static void Write(StreamWriter log, string? line)
    {
        if (line is null)
        {
            return;
        }
        try
        {
            log.WriteLine(line);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Posix.Signal(_process.Id, Posix.SigTerm);
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (TimeoutException)
            {
                _process.Kill();
            }
        }
        _process.Dispose();
    }
}
