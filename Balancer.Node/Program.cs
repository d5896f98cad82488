using System.CommandLine;
using Balancer.Node;
using Balancer.Node.Commands;

// Socket completions on the epoll thread save a thread-pool hop per read/write: measured in bench/
// as less CPU per request for both frontends. Read once, at the first socket, so it is set before
// anything else; an explicit DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0 keeps it off.
const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
{
    Environment.SetEnvironmentVariable(InlineCompletions, "1");
}

return await BalancerCli.MainAsync(args, Console.Out, Console.Error);

namespace Balancer.Node
{
    /// <summary>The <c>balancer</c> executable: one verb per command. Exit codes: 0 ok, 1 failed, 2 usage.</summary>
    internal static class BalancerCli
    {
        /// <summary>Every verb and option, as System.CommandLine parses, helps with and completes them.</summary>
        public static RootCommand CreateRoot()
        {
            var root = new RootCommand("balancer — a resilient load-balancer cluster on Akka.NET. With no command: `balancer run`.");
            // `balancer --config node1.conf` is `balancer run --config node1.conf`.
            RunCommand.Configure(root);
            root.Subcommands.Add(RunCommand.Configure(new Command("run", "Run one node in the foreground until Ctrl+C or SIGTERM.")));
            root.Subcommands.Add(CheckConfigCommand.Create());
            root.Subcommands.Add(DemoCommand.Create());
            root.Subcommands.Add(BackendCommand.Create());
            root.Subcommands.Add(CtlCommand.Create());
            root.Subcommands.Add(CompletionCommand.Create());
            var version = new Command("version", "Print the version.");
            version.SetAction(parse => parse.InvocationConfiguration.Output.WriteLine(BalancerSettings.Version));
            root.Subcommands.Add(version);
            var help = new Command("help", "Print this help (like --help).") { Hidden = true };
            help.SetAction(parse => root.Parse("--help").Invoke(parse.InvocationConfiguration));
            root.Subcommands.Add(help);
            return root;
        }

        /// <summary>`balancer --config x.conf run`: run's options given to the root belong after `run`; taken there, they would be dropped.</summary>
        private static string? RunOptionsBeforeAVerb(RootCommand root, ParseResult parse)
        {
            if (parse.CommandResult.Command == root)
            {
                return null;
            }
            var misplaced = root.Options.Where(o => o.Name is "--config" or "--set" && parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
            return misplaced.Count == 0 ? null : $"{string.Join(" and ", misplaced)} {(misplaced.Count == 1 ? "goes" : "go")} after the command (`balancer run --config FILE`), not before `{parse.CommandResult.Command.Name}`";
        }

        public static async Task<int> MainAsync(string[] args, TextWriter output, TextWriter error)
        {
            var root = CreateRoot();
            var parse = root.Parse(args, CliOptions.Parsing);
            var problem = RunOptionsBeforeAVerb(root, parse) ?? CtlCommand.TargetProblem(parse);
            if (parse.Errors.Count > 0 || problem is not null)
            {
                return CliOptions.ReportParseErrors(parse, error, "balancer", problem);
            }
            try
            {
                return await parse.InvokeAsync(CliOptions.Invocation(output, error));
            }
            catch (UsageException e)
            {
                error.WriteLine($"balancer: {e.Message}");
                error.WriteLine($"run `{CliOptions.CommandPath(parse.CommandResult)} --help` for usage");
                return CliOptions.Usage;
            }
            catch (ConfigLoadException e)
            {
                error.WriteLine($"balancer: {e.Message}");
                return CliOptions.Failed;
            }
        }
    }
}
