using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Balancer.Node.Commands;

/// <summary>
/// <c>balancer demo</c>: three demo backends and N nodes (hocon/nodeN.conf), each a separate OS
/// process, in the foreground. Ctrl+C or SIGTERM stops every child; children also stop by themselves
/// if the launcher is killed.
/// </summary>
internal static class DemoCommand
{
    public const string Usage = "balancer demo [--nodes 1..3] [--hocon DIR]";

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private static readonly (string Name, int Port)[] Backends = [("a", 9001), ("b", 9002), ("c", 9003)];

    public static async Task<int> RunAsync(CommandLine args, TextWriter output, TextWriter error)
    {
        var nodes = args.Int("nodes", 3, 1, 3);
        var hocon = args.One("hocon") ?? FindHoconDirectory()
            ?? throw new UsageException("cannot find the hocon/ directory (run from the repository or pass --hocon DIR)");
        args.RejectUnknown();
        if (args.Positional.Count > 0)
        {
            throw new UsageException($"unexpected argument \"{args.Positional[0]}\"");
        }
        for (var i = 1; i <= nodes; i++)
        {
            if (!File.Exists(Path.Combine(hocon, $"node{i}.conf")))
            {
                throw new UsageException($"{Path.Combine(hocon, $"node{i}.conf")} does not exist");
            }
        }

        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        var children = new List<Child>();
        try
        {
            foreach (var (name, port) in Backends)
            {
                children.Add(Child.Start($"backend {name}", ["backend", "--port", port.ToString(), "--name", name], "listening on"));
            }
            for (var i = 1; i <= nodes; i++)
            {
                children.Add(Child.Start($"node{i}", ["run", "--config", Path.Combine(hocon, $"node{i}.conf")], " ready"));
            }
            foreach (var child in children)
            {
                if (!await child.WaitReadyAsync(ReadyTimeout, stop.Token))
                {
                    error.WriteLine($"balancer demo: {child.Name} did not start:");
                    error.WriteLine(child.LastLines());
                    return 1;
                }
            }

            output.WriteLine($"""

                Balancer demo: {nodes} node(s), backends a b c on 127.0.0.1:9001-9003 (Ctrl+C stops everything)

                  shared HTTP port (every node, SO_REUSEPORT):  curl http://127.0.0.1:8080/
                  one node's HTTP port:                         {string.Join("  ", Enumerable.Range(1, nodes).Select(i => $"http://127.0.0.1:{8080 + i}/"))}
                  shared TCP port:                              curl http://127.0.0.1:7070/
                  one node's TCP port:                          {string.Join("  ", Enumerable.Range(1, nodes).Select(i => $"127.0.0.1:{7070 + i}"))}
                  fail backend b's health check:                curl -X POST 'http://127.0.0.1:9002/control/health?ok=false'
                  make backend c slow:                          curl -X POST 'http://127.0.0.1:9003/control/slow?ms=200'
                  check a configuration:                        balancer check-config {Path.Combine(hocon, "node1.conf")}

                """);
            while (!stop.IsCancellationRequested)
            {
                var exited = children.FirstOrDefault(c => c.HasExited);
                if (exited is not null)
                {
                    error.WriteLine($"balancer demo: {exited.Name} exited unexpectedly:");
                    error.WriteLine(exited.LastLines());
                    return 1;
                }
                await Task.Delay(500, stop.Token).ContinueWith(_ => { });
            }
            output.WriteLine("balancer demo: stopping");
            return 0;
        }
        finally
        {
            // Nodes first so they leave while the backends still answer, then the backends.
            foreach (var child in Enumerable.Reverse(children))
            {
                child.Terminate();
            }
            foreach (var child in Enumerable.Reverse(children))
            {
                await child.StopAsync(TimeSpan.FromSeconds(20));
            }
        }
    }

    internal static string? FindHoconDirectory()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                var candidate = Path.Combine(directory.FullName, "hocon");
                if (File.Exists(Path.Combine(candidate, "node1.conf")))
                {
                    return candidate;
                }
            }
        }
        return null;
    }

    /// <summary>A child process of the demo, started with this same executable.</summary>
    private sealed class Child
    {
        private readonly Process _process;
        private readonly string _readyText;
        private readonly Queue<string> _lines = new();
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private Child(string name, Process process, string readyText)
        {
            Name = name;
            _process = process;
            _readyText = readyText;
        }

        public string Name { get; }

        public bool HasExited => _process.HasExited;

        public static Child Start(string name, string[] args, string readyText)
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
                info.ArgumentList.Add(typeof(DemoCommand).Assembly.Location);
            }
            foreach (var arg in args)
            {
                info.ArgumentList.Add(arg);
            }
            info.Environment[ParentWatch.EnvironmentVariable] = Environment.ProcessId.ToString();
            var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {name}");
            var child = new Child(name, process, readyText);
            process.OutputDataReceived += (_, e) => child.OnLine(e.Data);
            process.ErrorDataReceived += (_, e) => child.OnLine(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return child;
        }

        public async Task<bool> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            var exited = _process.WaitForExitAsync(cancellationToken);
            var first = await Task.WhenAny(_ready.Task, exited, Task.Delay(timeout, cancellationToken));
            return first == _ready.Task;
        }

        public string LastLines()
        {
            lock (_lines)
            {
                return string.Join(Environment.NewLine, _lines.Select(l => "  " + l));
            }
        }

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

        public async Task StopAsync(TimeSpan grace)
        {
            try
            {
                await _process.WaitForExitAsync().WaitAsync(grace);
            }
            catch (TimeoutException)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
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
                while (_lines.Count > 20)
                {
                    _lines.Dequeue();
                }
            }
            if (line.Contains(_readyText, StringComparison.Ordinal))
            {
                _ready.TrySetResult();
            }
        }
    }
}
