using System.Diagnostics;

namespace Balancer.Tests.Node;

/// <summary>deploy/balancer@.service, checked by systemd itself.</summary>
public class ServiceUnitTests
{
    [Fact]
    public async Task ServiceUnit_PassesSystemdAnalyzeVerify()
    {
        if (!File.Exists("/usr/bin/systemd-analyze"))
        {
            // .ci/run installs systemd; a developer machine without it has nothing to check with.
            Assert.Fail("systemd-analyze is not installed (apt-get install systemd)");
        }
        var root = CommandLineTests.RepositoryRoot();
        var unit = await File.ReadAllTextAsync(Path.Combine(root, "deploy", "balancer@.service"));
        Assert.Contains("ExecStart=/opt/balancer/balancer run --config /etc/balancer/%i.conf", unit);
        var directory = Directory.CreateTempSubdirectory("balancer-unit-").FullName;
        try
        {
            // verify checks that ExecStart's program exists: point it at the balancer these tests run.
            var instance = Path.Combine(directory, "balancer@node1.service");
            await File.WriteAllTextAsync(instance, unit.Replace("/opt/balancer/balancer", Path.Combine(AppContext.BaseDirectory, "balancer")));
            var info = new ProcessStartInfo("/usr/bin/systemd-analyze") { RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("verify");
            info.ArgumentList.Add(instance);
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var text = await output + await errors;
            // Only what it says about this unit counts (the host's own units may have warnings of their own).
            var aboutThisUnit = text.Split('\n').Where(l => l.Contains("balancer@node1", StringComparison.Ordinal)).ToList();
            Assert.True(process.ExitCode == 0 && aboutThisUnit.Count == 0, $"exit {process.ExitCode}:\n{text}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
