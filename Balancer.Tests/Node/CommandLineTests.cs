using Balancer.Node;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Node;

public class CommandLineTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("balancer-cli-").FullName;

    [Fact]
    public async Task CheckConfig_ThreeMistakes_ThreeLinesEachNamingItsKey()
    {
        var file = Write("three.conf", """
            balancer {
              frontends {
                web { mode = http, bind = ["127.0.0.1:8080"], pool = missing }
              }
              pools {
                app {
                  algorithm = fastest
                  backends {
                    a { address = "127.0.0.1:9001", weight = -5 }
                  }
                }
              }
            }
            """);
        var (code, output, error) = await RunAsync("check-config", file);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Contains(lines, l => l == $"{file}: balancer.frontends.web.pool: unknown pool \"missing\" (defined pools: app)");
        Assert.Contains(lines, l => l.StartsWith($"{file}: balancer.pools.app.algorithm: unknown algorithm \"fastest\"", StringComparison.Ordinal));
        Assert.Contains(lines, l => l == $"{file}: balancer.pools.app.backends.a.weight: expected a whole number from 0 to 10000, got \"-5\"");
    }

    [Fact]
    public async Task CheckConfig_ShippedHoconFiles_AreValid()
    {
        var hocon = Path.Combine(RepositoryRoot(), "hocon");
        var files = Directory.GetFiles(hocon, "*.conf", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        var (code, output, error) = await RunAsync(["check-config", .. files]);
        Assert.True(code == 0, error);
        Assert.Equal(files.Length, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public async Task CheckConfig_BadHocon_OneLineWithFileLineAndColumn()
    {
        var file = Write("syntax.conf", "balancer {\n  pools { x { a = 1 }, y = 2 }\n");
        var (code, _, error) = await RunAsync("check-config", file);
        Assert.Equal(1, code);
        Assert.Equal($"{file}:2:22: Unknown token (after \"NAME {{ ... }}\" start the next entry on a new line instead of a comma)", error.Trim());
    }

    [Fact]
    public async Task CheckConfig_MissingFile_NamesItOnce()
    {
        var (code, _, error) = await RunAsync("check-config", Path.Combine(_directory, "absent.conf"));
        Assert.Equal(1, code);
        Assert.Equal($"{Path.Combine(_directory, "absent.conf")}: no such file", error.Trim());
    }

    [Fact]
    public async Task CheckConfig_MisspeltKey_SuggestsTheNearestOne()
    {
        var file = Path.Combine(_directory, "misspelt.conf");
        File.WriteAllText(file, "balancer.pools.app { backends.a = \"127.0.0.1:1\", retires = 2 }\n");
        var (code, _, error) = await RunAsync("check-config", file);
        Assert.Equal(1, code);
        Assert.StartsWith($"{file}: balancer.pools.app.retires: unknown key (did you mean \"retries\"? expected one of: ", error.Trim());
    }

    [Fact]
    public async Task CheckConfig_IncludeAndSet_AreApplied()
    {
        Write("base.conf", "balancer.pools.app.backends.a = \"127.0.0.1:9001\"");
        var file = Write("node.conf", "include \"base.conf\"\nbalancer.frontends.web { bind = \"127.0.0.1:8080\", pool = app }");
        Assert.Equal(0, (await RunAsync("check-config", file)).Code);
        var (code, _, error) = await RunAsync("check-config", file, "--set", "balancer.pools.app.retries=-2");
        Assert.Equal(1, code);
        Assert.Contains("balancer.pools.app.retries: expected a whole number from 0 to 100, got \"-2\"", error);
    }

    [Fact]
    public async Task Run_InvalidConfig_RefusesWithTheSameLines()
    {
        var file = Write("bad.conf", "balancer.pools.app.algorithm = fastest\nbalancer.pools.app.retries = x");
        var (code, _, error) = await RunAsync("run", "--config", file);
        Assert.Equal(1, code);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("balancer.pools.app.algorithm: unknown algorithm", lines[0]);
        Assert.StartsWith("balancer.pools.app.retries: expected a whole number", lines[1]);
        Assert.Equal("balancer: refusing to start: 2 configuration problem(s)", lines[2]);
    }

    [Theory]
    [InlineData(new[] { "frobnicate" }, "balancer: Unrecognized command or argument 'frobnicate'.")]
    [InlineData(new[] { "run", "--confg", "x.conf" }, "balancer: Unrecognized command or argument '--confg'.")]
    [InlineData(new[] { "run", "--config" }, "balancer: Required argument missing for option: '--config'.")]
    [InlineData(new[] { "backend", "--port", "99999" }, "balancer: --port expects a whole number from 0 to 65535, got \"99999\"")]
    [InlineData(new[] { "backend" }, "balancer: Option '--port' is required.")]
    [InlineData(new[] { "backend", "--port", "1", "--fail-rate", "2" }, "balancer: --fail-rate expects a number from 0 to 1, got \"2\"")]
    [InlineData(new[] { "backend", "--port", "0", "--client-ca", "ca.pem" }, "balancer: --client-ca needs --certificate (the backend serves TLS only with a certificate)")]
    [InlineData(new[] { "backend", "--port", "0", "--certificate", "/nonexistent/backend.pem" }, "balancer: --certificate: cannot load /nonexistent/backend.pem: ")]
    [InlineData(new[] { "check-config" }, "balancer: Required argument missing for command: 'check-config'.")]
    [InlineData(new[] { "demo", "--kills", "3" }, "balancer: --kills goes with --chaos INTERVAL")]
    [InlineData(new[] { "demo", "--mode", "active-pasive" }, "balancer: Argument 'active-pasive' not recognized. Must be one of:")]
    [InlineData(new[] { "completion", "fish" }, "balancer: Argument 'fish' not recognized. Must be one of:")]
    [InlineData(new[] { "demo", "--kills", "x" }, "balancer: --kills expects a whole number from 0 to 1000000, got \"x\"")]
    [InlineData(new[] { "demo", "--chaos", "bogus" }, "balancer: --chaos expects an interval such as 20s or 1m, got \"bogus\"")]
    [InlineData(new[] { "demo", "--chaos", "20s", "--nodes", "12" }, "balancer: --nodes expects a whole number from 1 to 9, got \"12\"")]
    [InlineData(new[] { "demo", "--chaos", "20s", "--nodes", "2" }, "balancer: --chaos needs --nodes 3 or more")]
    [InlineData(new[] { "--config", "node1.conf", "run" }, "balancer: --config goes after the command (`balancer run --config FILE`), not before `run`")]
    public async Task BadArguments_ExitTwoWithTheReasonFirstAndWhereHelpIs(string[] args, string expected)
    {
        var (code, output, error) = await RunAsync(args);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith(expected, lines[0]);
        Assert.StartsWith("run `balancer", lines[^1]);
        Assert.EndsWith("--help` for usage", lines[^1]);
    }

    [Fact]
    public async Task MisspeltVerbOrOption_SuggestsTheNearestOne()
    {
        var (code, _, error) = await RunAsync("chek-config", "x.conf");
        Assert.Equal(2, code);
        Assert.Contains("'chek-config' was not matched. Did you mean one of the following?\ncheck-config", error);

        (code, _, error) = await RunAsync("run", "--confg", "x.conf");
        Assert.Equal(2, code);
        Assert.Contains("Did you mean one of the following?\n--config", error);

        (code, _, error) = await RunAsync("ctl", "clustr", "show");
        Assert.Equal(2, code);
        Assert.StartsWith("balancer: unknown command \"clustr\" (expected HOST:PORT or one of cluster, pools,", error);
        Assert.Contains("did you mean `cluster`?", error.Split('\n')[0]);
    }

    [Fact]
    public async Task Help_ForEveryVerb_NamesItsOptionsAndCommands()
    {
        var (code, output, _) = await RunAsync("--help");
        Assert.Equal(0, code);
        foreach (var verb in new[] { "run", "check-config", "demo", "backend", "ctl", "completion", "version" })
        {
            Assert.Matches($@"(?m)^  {verb}\b", output);
        }
        Assert.Contains("--config <FILE>", output);
        Assert.Equal(output, (await RunAsync("help")).Output);

        (code, output, _) = await RunAsync("backend", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--port <N> (REQUIRED)", output);
        Assert.Contains("--fail-rate <X>", output);

        (code, output, _) = await RunAsync("ctl", "backend", "weight", "--help");
        Assert.Equal(0, code);
        Assert.Contains(" ctl [<HOST:PORT>] backend weight <POOL/BACKEND> <WEIGHT> [options]", output);
        Assert.Contains("--token <T>", output);
    }

    [Fact]
    public async Task Completion_Bash_CompletesVerbsAndCtlCommandsFromTheBinary()
    {
        var (code, script, _) = await RunAsync("completion", "bash");
        Assert.Equal(0, code);
        var file = Write("balancer.bash", script);
        // What bash does on Tab: the completion function with the line, the cursor and the words.
        async Task<string> Complete(string line)
        {
            var words = line.Split(' ');
            var info = new System.Diagnostics.ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add($"""
                source '{file}'
                COMP_LINE='{line}'; COMP_POINT=${"{"}#COMP_LINE{"}"}
                COMP_WORDS=({string.Join(' ', words.Select(w => $"'{w}'"))}); COMP_CWORD={words.Length - 1}
                _balancer_completions
                printf '%s\n' "${"{"}COMPREPLY[@]{"}"}"
                """);
            info.Environment["PATH"] = AppContext.BaseDirectory + ":" + Environment.GetEnvironmentVariable("PATH");
            using var bash = System.Diagnostics.Process.Start(info)!;
            var text = await bash.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
            await bash.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            return text.Trim();
        }
        Assert.Equal("check-config", await Complete("balancer check"));
        Assert.Equal("cluster", await Complete("balancer ctl clu"));
        Assert.Equal("drain", await Complete("balancer ctl backend dr"));
        Assert.Equal("active-active\nactive-passive", await Complete("balancer demo --mode act"));
        Assert.Contains("#compdef balancer", (await RunAsync("completion", "zsh")).Output);
    }

    [Theory]
    [InlineData("backend weight app/b heavy", "weight must be a whole number 0..10000")]
    [InlineData("backend drain app", "expected POOL/BACKEND")]
    [InlineData("backend drain", "Required argument missing for command: 'drain'")]
    [InlineData("cluster explode", "Unrecognized command or argument 'explode'")]
    [InlineData("pools extra", "Unrecognized command or argument 'extra'")]
    [InlineData("log level loud", "Argument 'loud' not recognized")]
    [InlineData("fly", "Unrecognized command or argument 'fly'")]
    public async Task Ctl_WrongArguments_ExitTwoWithTheReasonAndWhereHelpIs(string command, string reason)
    {
        // A closed port: argument mistakes are found before anything is sent.
        var (code, _, error) = await RunAsync(["ctl", $"127.0.0.1:{Ports.Closed()}", .. command.Split(' ')]);
        Assert.Equal(2, code);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(reason, lines[0]);
        Assert.StartsWith("run `balancer ctl", lines[^1]);
    }

    [Fact]
    public async Task Ctl_UnknownOption_ExitsTwo()
    {
        var (code, _, error) = await RunAsync("ctl", "--tokn", "x", "pools");
        Assert.Equal(2, code);
        Assert.StartsWith("balancer: unknown option --tokn; did you mean `--token`?", error);
    }

    [Fact]
    public async Task Ctl_UnreachableNode_ExitsOneWithAClearReason()
    {
        var port = Ports.Closed();
        var (code, output, error) = await RunAsync("ctl", $"127.0.0.1:{port}", "cluster", "show");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Equal($"balancer ctl: node 127.0.0.1:{port} unreachable: connection refused (is the node running, and is this its admin address?)", error.Trim());
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static async Task<(int Code, string Output, string Error)> RunAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await BalancerCli.MainAsync(args, output, error);
        return (code, output.ToString().Replace("\r", ""), error.ToString().Replace("\r", ""));
    }

    internal static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Balancer.sln")))
        {
            directory = directory.Parent;
        }
        return directory?.FullName ?? throw new InvalidOperationException("Balancer.sln not found above " + AppContext.BaseDirectory);
    }
}
