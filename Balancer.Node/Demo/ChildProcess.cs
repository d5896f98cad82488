using System.Diagnostics;

namespace Balancer.Node.Demo;

/// <summary>
/// A process the demo starts with this same executable (a backend or a node). It watches the
/// launcher through <see cref="ParentWatch"/>, so it stops even when the launcher is killed.
/// </summary>
internal sealed class ChildProcess
{
    private readonly Process _process;
    private readonly string _readyText;
    private readonly Queue<string> _lines = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<string>? _onLine;
    private readonly StreamWriter? _log;

    private ChildProcess(string name, string[] args, Process process, string readyText, Action<string>? onLine, string? logPath)
    {
        Name = name;
        Args = args;
        _process = process;
        _readyText = readyText;
        _onLine = onLine;
        LogPath = logPath;
        if (logPath is not null)
        {
            // Appended to: a restarted child continues the log of the one before it.
            _log = new StreamWriter(new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        }
    }

    public string Name { get; }

    /// <summary>The arguments it was started with, to start it again.</summary>
    public string[] Args { get; }

    public string ReadyText => _readyText;

    /// <summary>The file its output goes to (null: kept in memory only).</summary>
    public string? LogPath { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.HasExited ? _process.ExitCode : 0;

    /// <summary>Starts it; every line it prints goes to <paramref name="logPath"/> (appended) and <paramref name="onLine"/>.</summary>
    public static ChildProcess Start(string name, string[] args, string readyText, Action<string>? onLine = null, string? logPath = null)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Under `dotnet balancer.dll` the process is dotnet itself: pass the assembly on.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
        {
            info.ArgumentList.Add(EntryAssemblyPath);
        }
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        info.Environment[ParentWatch.EnvironmentVariable] = Environment.ProcessId.ToString();
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {name}");
        var child = new ChildProcess(name, args, process, readyText, onLine, logPath);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>
    /// This executable's assembly, for starting it under <c>dotnet</c> (never a single-file app:
    /// that one is its own process path).
    /// </summary>
    internal static string EntryAssemblyPath => Path.Combine(AppContext.BaseDirectory, typeof(ChildProcess).Assembly.GetName().Name + ".dll");

    /// <summary>The same child started again with the same arguments.</summary>
    public ChildProcess Restart()
    {
        // This one has exited: its log closes, and the new process appends to the same file.
        lock (_lines)
        {
            _log?.Dispose();
        }
        return Start(Name, Args, _readyText, _onLine, LogPath);
    }

    public async Task<bool> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var exited = _process.WaitForExitAsync(cancellationToken);
        var first = await Task.WhenAny(_ready.Task, exited, Task.Delay(timeout, cancellationToken));
        return first == _ready.Task;
    }

    /// <summary>True once the child has printed <paramref name="text"/> (among its last lines).</summary>
    public bool HasPrinted(string text)
    {
        lock (_lines)
        {
            return _lines.Any(l => l.Contains(text, StringComparison.Ordinal));
        }
    }

    public string LastLines()
    {
        lock (_lines)
        {
            return string.Join(Environment.NewLine, _lines.Select(l => "  " + l));
        }
    }

    /// <summary>SIGTERM: a node leaves the cluster, then stops.</summary>
    public void Terminate()
    {
        try
        {
            if (!_process.HasExited)
            {
                Posix.Signal(_process.Id, Posix.SigTerm);
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>SIGKILL, as a crash would: no goodbye to the cluster.</summary>
    public async Task KillAsync()
    {
        try
        {
            Posix.Signal(_process.Id, 9);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// Waits up to <paramref name="grace"/> for the child to exit, then kills it (and anything it
    /// started); false if it had to be killed.
    /// </summary>
    public async Task<bool> StopAsync(TimeSpan grace)
    {
        var stopped = true;
        try
        {
            await _process.WaitForExitAsync().WaitAsync(grace);
        }
        catch (TimeoutException)
        {
            stopped = false;
            _process.Kill(entireProcessTree: true);
        }
        // The output readers finish once the process has exited; then the log can close.
        _process.WaitForExit();
        _process.Dispose();
        lock (_lines)
        {
            _log?.Dispose();
        }
        return stopped;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_lines)
        {
            _lines.Enqueue(line);
            while (_lines.Count > 40)
            {
                _lines.Dequeue();
            }
            try
            {
                _log?.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
            }
        }
        _onLine?.Invoke(line);
        if (line.Contains(_readyText, StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }
}
