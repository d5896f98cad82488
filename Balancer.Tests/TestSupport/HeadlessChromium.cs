using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// Headless Chromium driven over the DevTools protocol (a WebSocket): open a page, evaluate
/// JavaScript in it. The browser process is killed by PID and its profile deleted on dispose.
/// </summary>
internal sealed class HeadlessChromium : IAsyncDisposable
{
    public const string Executable = "/usr/bin/chromium";
    private readonly Process _process;
    private readonly string _profile;
    private readonly ClientWebSocket _socket = new();
    private int _nextId;

    private HeadlessChromium(Process process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    private static readonly Lazy<Task> Installed = new(InstallAsync);

    /// <summary>Starts the browser on <paramref name="url"/> and connects to that page.</summary>
    public static async Task<HeadlessChromium> OpenAsync(Uri url)
    {
        await Installed.Value;
        var profile = Directory.CreateTempSubdirectory("balancer-chromium-").FullName;
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--remote-debugging-port=0", $"--user-data-dir={profile}", url.ToString() })
        {
            start.ArgumentList.Add(arg);
        }
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var browser = new HeadlessChromium(process, profile);
        try
        {
            await browser.ConnectAsync(url);
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Debian's chromium, installed on first use when the machine lacks it (as root, with apt),
    /// so the status page is tested on a fresh machine too; where that is impossible the test
    /// fails saying why, rather than being skipped.
    /// </summary>
    /// <summary>
    /// One run of <c>chromium --headless</c> on <paramref name="url"/>, as a person would type it
    /// (<c>--screenshot=FILE</c>, <c>--dump-dom</c>, ...), with its own profile deleted afterwards;
    /// killed by PID if it runs longer than 60 s. Returns what it printed on stdout.
    /// </summary>
    public static async Task<string> RunOnceAsync(Uri url, params string[] flags)
    {
        await Installed.Value;
        var profile = Directory.CreateTempSubdirectory("balancer-chromium-").FullName;
        var start = new ProcessStartInfo(Executable) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        string[] args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", $"--user-data-dir={profile}", .. flags, url.ToString()];
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            return await stdout;
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"chromium {string.Join(' ', flags)} did not finish within 60 s: {await stderr}");
        }
        finally
        {
            Directory.Delete(profile, recursive: true);
        }
    }

    private static async Task InstallAsync()
    {
        if (File.Exists(Executable))
        {
            return;
        }
        if (Environment.UserName != "root" || !File.Exists("/usr/bin/apt-get"))
        {
            throw new InvalidOperationException($"{Executable} is missing and cannot be installed from here: run `apt-get install chromium` as root");
        }
        var install = new ProcessStartInfo("/bin/sh", ["-c", "apt-get update -qq && apt-get install -y -qq chromium"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        install.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        using var process = Process.Start(install)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException("installing chromium took more than 5 minutes");
        }
        if (process.ExitCode != 0 || !File.Exists(Executable))
        {
            throw new InvalidOperationException($"apt-get install chromium failed ({process.ExitCode}): {(await error).Trim()} {(await output).Trim()}");
        }
    }

    private async Task ConnectAsync(Uri url)
    {
        // Chromium writes its DevTools port into the profile once it listens.
        var portFile = Path.Combine(_profile, "DevToolsActivePort");
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(portFile) || File.ReadAllLines(portFile).Length < 2)
        {
            if (_process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"chromium did not open its DevTools port (exited: {_process.HasExited})");
            }
            await Task.Delay(100);
        }
        var port = int.Parse(File.ReadAllLines(portFile)[0]);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        string? pageSocket = null;
        while (pageSocket is null)
        {
            var targets = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list")).RootElement;
            pageSocket = targets.EnumerateArray()
                .Where(t => t.GetProperty("type").GetString() == "page" && t.GetProperty("url").GetString()!.StartsWith(url.GetLeftPart(UriPartial.Authority), StringComparison.Ordinal))
                .Select(t => t.GetProperty("webSocketDebuggerUrl").GetString())
                .FirstOrDefault();
            if (pageSocket is null)
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "chromium never showed the page target");
                await Task.Delay(100);
            }
        }
        await _socket.ConnectAsync(new Uri(pageSocket), CancellationToken.None);
    }

    /// <summary>The value of <paramref name="expression"/> evaluated in the page (JSON of a primitive, or null).</summary>
    public async Task<JsonElement> EvaluateAsync(string expression)
    {
        var id = ++_nextId;
        var command = JsonSerializer.Serialize(new { id, method = "Runtime.evaluate", @params = new { expression, returnByValue = true } });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _socket.SendAsync(Encoding.UTF8.GetBytes(command), WebSocketMessageType.Text, true, timeout.Token);
        var buffer = new byte[1 << 16];
        while (true)
        {
            using var message = new MemoryStream();
            WebSocketReceiveResult received;
            do
            {
                received = await _socket.ReceiveAsync(buffer, timeout.Token);
                message.Write(buffer, 0, received.Count);
            }
            while (!received.EndOfMessage);
            var reply = JsonDocument.Parse(message.ToArray()).RootElement;
            // Events the page emits arrive on the same socket; only our answer counts.
            if (reply.TryGetProperty("id", out var replyId) && replyId.GetInt32() == id)
            {
                var result = reply.GetProperty("result").GetProperty("result");
                return result.TryGetProperty("value", out var value) ? value.Clone() : default;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token).ContinueWith(_ => { });
            }
        }
        finally
        {
            _socket.Dispose();
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { });
            }
            _process.Dispose();
            try
            {
                Directory.Delete(_profile, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
