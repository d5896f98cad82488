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
        private static readonly HashSet<string> Flags = new() { "help", "json", "keep-state", "logs" };

        public static readonly string Usage = $"""
            balancer {"{"}version{"}"} — a resilient load-balancer cluster on Akka.NET

            usage:
              {RunCommand.Usage}
              {CheckConfigCommand.Usage}
              {DemoCommand.Usage}
              {BackendCommand.Usage}
              {CtlCommand.Usage}
              balancer version

            ctl commands:
            {CtlCommand.Palette}

            `balancer` with no verb is `balancer run`.
            """;

        public static async Task<int> MainAsync(string[] args, TextWriter output, TextWriter error)
        {
            var verb = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "run";
            var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
            try
            {
                var commandLine = new CommandLine(rest, Flags);
                if (commandLine.Flag("help") || verb == "help")
                {
                    output.WriteLine(Usage.Replace("{version}", BalancerSettings.Version));
                    return 0;
                }
                return verb switch
                {
                    "run" => await RunCommand.RunAsync(commandLine, output, error),
                    "check-config" => CheckConfigCommand.Run(commandLine, output, error),
                    "backend" => await BackendCommand.RunAsync(commandLine, output),
                    "demo" => await DemoCommand.RunAsync(commandLine, output, error),
                    "ctl" => await CtlCommand.RunAsync(commandLine, output, error),
                    "version" => PrintVersion(output),
                    _ => throw new UsageException($"unknown command \"{verb}\" (expected run, demo, ctl, check-config, backend or version)"),
                };
            }
            catch (UsageException e)
            {
                error.WriteLine($"balancer: {e.Message}");
                error.WriteLine("run `balancer help` for usage");
                return 2;
            }
            catch (ConfigLoadException e)
            {
                error.WriteLine($"balancer: {e.Message}");
                return 1;
            }
        }

        private static int PrintVersion(TextWriter output)
        {
            output.WriteLine(BalancerSettings.Version);
            return 0;
        }
    }
}
