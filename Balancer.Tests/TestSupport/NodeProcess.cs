using System.Diagnostics;
using System.Text;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// A real <c>balancer</c> process (the built Balancer.Node next to the tests), its output captured;
/// killed by PID on dispose so that no test leaves a process behind.
/// </summary>
internal sealed class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();
    private readonly object _gate = new();

    private NodeProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>What the process wrote to stderr alone (it is in <see cref="Output"/> too).</summary>
    public string Errors
    {
        get
        {
            lock (_gate)
            {
                return _errors.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>
    /// A terminal's foreground job gets Ctrl+C; a background job (as CI runners start these tests)
    /// inherits SIGINT ignored, and a process that starts with SIGINT ignored never sees it. Balancer
    /// processes are started with SIGINT at its default then, as a user's terminal would start them.
    /// </summary>
    private static readonly bool ResetInterrupt = InterruptIgnored();

    public static NodeProcess Start(params string[] args) => StartIn(null, args);

    /// <summary>
    /// Starts <c>balancer</c> with <paramref name="args"/> in the network namespace
    /// <paramref name="netns"/> (a <see cref="TestNetwork"/> host), or in the test's own when null.
    /// <c>ip netns exec</c> execs the program, so the PID is the balancer's.
    /// </summary>
    public static NodeProcess StartIn(string? netns, params string[] args) => StartIn(netns, null, args);

    /// <summary>As <see cref="StartIn(string?, string[])"/>, with <paramref name="environment"/> added to the process's environment.</summary>
    public static NodeProcess StartIn(string? netns, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "balancer.dll");
        var info = new ProcessStartInfo(netns is not null ? "ip" : ResetInterrupt ? "env" : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        if (netns is not null)
        {
            info.ArgumentList.Add("netns");
            info.ArgumentList.Add("exec");
            info.ArgumentList.Add(netns);
            if (ResetInterrupt)
            {
                info.ArgumentList.Add("env");
            }
        }
        if (ResetInterrupt)
        {
            info.ArgumentList.Add("--default-signal=INT,HUP");
        }
        if (netns is not null || ResetInterrupt)
        {
            info.ArgumentList.Add("dotnet");
        }
        info.ArgumentList.Add(dll);
        // If the test host itself dies, its balancer processes follow it instead of holding ports.
        info.Environment["BALANCER_PARENT_PID"] = Environment.ProcessId.ToString();
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start balancer");
        var node = new NodeProcess(process);
        process.OutputDataReceived += (_, e) => node.Append(e.Data);
        process.ErrorDataReceived += (_, e) => node.Append(e.Data, error: true);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return node;
    }

    /// <summary>
    /// True if this process inherited SIGINT or SIGHUP ignored (bits of the SigIgn mask in
    /// /proc/self/status): a shell's background job, or `nohup`. The node would inherit that too,
    /// and .NET installs no handler for a signal it finds ignored.
    /// </summary>
    private static bool InterruptIgnored()
    {
        const int SigHup = 1;
        const int SigInt = 2;
        var line = File.Exists("/proc/self/status")
            ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))
            : null;
        var ignored = line is null ? 0 : Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16);
        return (ignored & ((1UL << (SigInt - 1)) | (1UL << (SigHup - 1)))) != 0;
    }

    /// <summary>Waits until the output contains <paramref name="text"/>; fails with the output so far.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"balancer exited with {_process.ExitCode} before printing \"{text}\":\n{Output}");
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"balancer did not print \"{text}\" within {timeout}:\n{Output}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until the process exits; fails with the output so far.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"balancer did not exit within {timeout}:\n{Output}");
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>kill -9, and wait until the kernel has reaped it (its sockets are closed then).</summary>
    public async Task KillAsync()
    {
        Balancer.Node.Posix.Signal(_process.Id, 9);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>SIGSTOP: the process freezes (a long GC pause, a stopped VM) until <see cref="Thaw"/>.</summary>
    public void Freeze() => Balancer.Node.Posix.Signal(_process.Id, 19);

    /// <summary>SIGCONT after <see cref="Freeze"/>.</summary>
    public void Thaw() => Balancer.Node.Posix.Signal(_process.Id, 18);

    /// <summary>SIGTERM, as an operator or orchestrator stops a node.</summary>
    public void Terminate()
    {
        if (!_process.HasExited)
        {
            Balancer.Node.Posix.Signal(_process.Id, Balancer.Node.Posix.SigTerm);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            // Already gone, or not reaped in time: the SIGKILL was sent either way.
        }
        _process.Dispose();
    }

    private void Append(string? line, bool error = false)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            _output.AppendLine(line);
            if (error)
            {
                _errors.AppendLine(line);
            }
        }
    }
}
