using System.CommandLine;

namespace Balancer.Node.Commands;

/// <summary><c>balancer check-config FILE...</c>: prints every problem, one per line; exit 1 if any.</summary>
internal static class CheckConfigCommand
{
    /// <summary><c>--set key=value</c>, repeatable: a HOCON value that overrides the files (shared with <c>run</c>).</summary>
    public static Option<string[]> SetOption() => new("--set")
    {
        Description = "Override one key of the configuration (key=value, HOCON); repeatable.",
        HelpName = "key=value",
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
    };

    public static Command Create()
    {
        var files = new Argument<string[]>("FILE") { Description = "HOCON files, each checked with the --set values.", Arity = ArgumentArity.OneOrMore };
        var sets = SetOption();
        var command = new Command("check-config", "Check configuration files: every problem on a line of its own; exit 1 if any.") { files, sets };
        command.SetAction(parse => Run(parse.GetValue(files)!, parse.GetValue(sets)!, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(IReadOnlyList<string> files, IReadOnlyList<string> sets, TextWriter output, TextWriter error)
    {
        var failed = false;
        foreach (var file in files)
        {
            var problems = Validate([file], sets);
            foreach (var problem in problems)
            {
                // A file that cannot be read or parsed is named by the problem itself.
                error.WriteLine(problem.StartsWith(file + ":", StringComparison.Ordinal) ? problem : $"{file}: {problem}");
            }
            if (problems.Count == 0)
            {
                output.WriteLine($"{file}: ok");
            }
            failed |= problems.Count > 0;
        }
        return failed ? 1 : 0;
    }

    /// <summary>Every problem of the configuration made of <paramref name="files"/> and <paramref name="sets"/>, as lines.</summary>
    public static IReadOnlyList<string> Validate(IReadOnlyList<string> files, IReadOnlyList<string> sets)
    {
        Akka.Configuration.Config config;
        try
        {
            config = NodeConfig.Load(files, sets);
        }
        catch (ConfigLoadException e)
        {
            return [e.Message];
        }
        return BalancerSettings.TryCreate(config, out _, out var problems)
            ? []
            : problems.Select(p => p.ToString()).ToList();
    }
}
