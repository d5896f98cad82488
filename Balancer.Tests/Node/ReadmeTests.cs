using System.Diagnostics;
using System.Text.RegularExpressions;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Node;

/// <summary>
/// The README's "Running a node" commands, run as printed from the repository root, as a newcomer
/// pastes them: a reader must never meet a command that does not work.
/// </summary>
[Collection(SerialCollection.Name)]
public class ReadmeTests
{
    [Fact]
    public async Task RunningANode_EveryCommand_RunsAsPrinted_FromTheRepositoryRoot()
    {
        var root = CommandLineTests.RepositoryRoot();
        var readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var section = Regex.Match(readme, @"^## Running a node\n(.*?)^## ", RegexOptions.Multiline | RegexOptions.Singleline).Groups[1].Value;
        var block = Regex.Match(section, @"```bash\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var lines = block.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToList();
        Assert.Equal("dotnet build -c Release", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("$B run ", StringComparison.Ordinal));

        // Each line as printed, in order, with two exceptions: the build already ran (this test
        // runs the binaries it made; building again under running tests would replace them), and
        // `run` stays in the foreground until Ctrl+C, so the script starts it as a job and waits
        // until its frontend answers, as the reader's second terminal would.
        var script = new List<string> { "set -e", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT" };
        var log = Path.GetTempFileName();
        foreach (var printed in lines.Skip(1))
        {
            var line = Regex.Replace(printed, @"\s+#.*$", "");
            if (line.StartsWith("$B run ", StringComparison.Ordinal))
            {
                script.Add($"{line} > {log} 2>&1 &");
                script.Add("for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:8081/ && break; sleep 0.2; done");
                continue;
            }
            script.Add(line.StartsWith("curl ", StringComparison.Ordinal) ? line + "; echo" : line);
        }
        var durable = Path.Combine(root, "data", "node1");
        var durableExisted = Directory.Exists(durable);
        try
        {
            var (code, output) = await ToolProcess.BashAsync(string.Join('\n', script), root, TimeSpan.FromSeconds(90));
            Assert.True(code == 0, $"exit code {code}:\n{output}\n{(File.Exists(log) ? File.ReadAllText(log) : "")}");
            // The round-robin answers the README promises, through the HTTP and the TCP frontend.
            Assert.Equal(lines.Count(l => l.StartsWith("curl ", StringComparison.Ordinal)), Regex.Matches(output, @"^[abc] /$", RegexOptions.Multiline).Count);
        }
        finally
        {
            File.Delete(log);
            if (!durableExisted && Directory.Exists(durable))
            {
                Directory.Delete(durable, recursive: true);
            }
        }
    }

    [Fact]
    public async Task FirstSection_RunClusterSh_StartsTheDemoAsPrinted_AndCtrlCStopsEverything()
    {
        var root = CommandLineTests.RepositoryRoot();
        var readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var first = Regex.Match(readme, @"```bash\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var demo = first.Split('\n').Select(l => Regex.Replace(l, @"\s+#.*$", "").Trim()).First(l => l.Length > 0);
        Assert.Equal("./run-cluster.sh", demo);
        var log = Path.GetTempFileName();
        try
        {
            // As typed in a terminal: the demo in the foreground of its own process group, then
            // Ctrl+C, which the terminal sends to that whole group.
            var script = $"""
                set -e
                env --default-signal=INT setsid {demo} > {log} 2>&1 &
                pid=$!
                for i in $(seq 900); do grep -q "kill a node like a crash would" {log} && break; kill -0 $pid; sleep 0.2; done
                grep -q "kill a node like a crash would" {log}
                kill -INT -- -$pid
                for i in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
                ! kill -0 $pid 2>/dev/null
                """;
            var (code, output) = await ToolProcess.BashAsync(script, root, TimeSpan.FromMinutes(4));
            var printed = File.ReadAllText(log);
            Assert.True(code == 0, $"exit code {code}: {output}\n{printed}");
            Assert.Contains("Balancer demo: 3 node(s)", printed);
            Assert.Contains("every process stopped", printed);
            Assert.False(Directory.Exists(Path.Combine(root, "data", "demo")), "a clean stop removes data/demo");
        }
        finally
        {
            File.Delete(log);
        }
    }
}
