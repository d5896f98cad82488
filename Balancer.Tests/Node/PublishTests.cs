using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Node;

/// <summary>deploy/publish.sh: what an installation gets, run where no .NET is installed.</summary>
[Collection(SerialCollection.Name)]
public class PublishTests
{
    [Fact]
    public async Task PublishScript_MakesOneExecutable_ThatRunsTheDemo_WithoutDotnet()
    {
        var root = CommandLineTests.RepositoryRoot();
        var work = Directory.CreateTempSubdirectory("balancer-publish-").FullName;
        var published = Path.Combine(work, "balancer");
        var home = Directory.CreateDirectory(Path.Combine(work, "home")).FullName;
        // A PATH with nothing on it: no dotnet, no SDK; the executable brings its runtime.
        var emptyPath = Directory.CreateDirectory(Path.Combine(work, "empty-path")).FullName;
        var log = Path.Combine(work, "demo.log");
        var pidFile = Path.Combine(work, "demo.pid");
        try
        {
            // Both steps within 4.5 min, under the suite's 5-minute hang limit: this test fails, the run goes on.
            var (code, output) = await ToolProcess.BashAsync($"deploy/publish.sh '{published}'", root, TimeSpan.FromMinutes(3));
            Assert.True(code == 0, output);
            Assert.Equal(["balancer"], Directory.GetFiles(published).Select(Path.GetFileName));
            Assert.Equal(Directory.GetFiles(Path.Combine(root, "hocon"), "*.conf").Select(Path.GetFileName).Order(),
                Directory.GetFiles(Path.Combine(published, "hocon")).Select(Path.GetFileName).Order());

            // `./balancer demo` from the publish folder, in an environment with nothing but HOME
            // (where .NET unpacks its native libraries), until it says it is up; one request
            // through the first node; then SIGTERM stops every process it started.
            var script = $"""
                set -e
                cd '{published}'
                setsid env -i PATH='{emptyPath}' HOME='{home}' ./balancer demo > '{log}' 2>&1 &
                pid=$!
                echo $pid > '{pidFile}'
                for i in $(seq 300); do grep -q "kill a node like a crash would" '{log}' && break; kill -0 $pid; sleep 0.2; done
                grep -q "kill a node like a crash would" '{log}'
                curl -fsS -m 5 -o /dev/null http://127.0.0.1:8080/
                kill -TERM $pid
                for i in $(seq 125); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
                ! kill -0 $pid 2>/dev/null
                """;
            (code, output) = await ToolProcess.BashAsync(script, work, TimeSpan.FromSeconds(100));
            var printed = File.Exists(log) ? await File.ReadAllTextAsync(log) : "";
            Assert.True(code == 0, $"exit code {code}: {output}\n{printed}");
            Assert.Contains("Balancer demo: 3 node(s)", printed);
            Assert.Contains("every process stopped", printed);
        }
        finally
        {
            // A failed run leaves no demo behind: its whole process group, by the PID it wrote.
            if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid))
            {
                await ToolProcess.BashAsync($"kill -KILL -- -{pid} 2>/dev/null || true", work, TimeSpan.FromSeconds(10));
            }
            Directory.Delete(work, recursive: true);
        }
    }
}
