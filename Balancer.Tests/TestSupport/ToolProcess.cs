using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Balancer.Tests.TestSupport;

/// <summary>Runs a command-line tool the way a user would, for tests that follow printed instructions.</summary>
internal static class ToolProcess
{
    /// <summary>
    /// Runs <paramref name="program"/> with <paramref name="arguments"/> in <paramref name="directory"/>
    /// and returns its exit code and output (stdout then stderr); killed by PID, with everything it
    /// started, after <paramref name="timeout"/> (exit code -1). Builds it starts use neither the
    /// test run's MSBuild and test-host variables nor a build server that would outlive them.
    /// </summary>
    public static async Task<(int Code, string Output)> RunAsync(string program, IEnumerable<string> arguments, string directory, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = directory };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(name);
        }
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["UseSharedCompilation"] = "false";
        // If the test host dies, balancer processes started from here follow it.
        info.Environment["BALANCER_PARENT_PID"] = Environment.ProcessId.ToString();
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"{program} timed out: " + await stdout + await stderr);
        }
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>Runs <paramref name="script"/> with /bin/sh (as a pasted command line would run).</summary>
    public static Task<(int Code, string Output)> ShellAsync(string script, string directory, TimeSpan timeout) =>
        RunAsync("/bin/sh", ["-c", script], directory, timeout);

    /// <summary>Runs <paramref name="script"/> with bash.</summary>
    public static Task<(int Code, string Output)> BashAsync(string script, string directory, TimeSpan timeout) =>
        RunAsync("bash", ["-c", script], directory, timeout);

    /// <summary>An HttpClient whose connections come from <paramref name="address"/> (any 127.0.0.0/8 address is this host).</summary>
    public static HttpClient ClientFrom(string address) => new(new SocketsHttpHandler
    {
        UseProxy = false,
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    }) { Timeout = TimeSpan.FromSeconds(10) };
}
