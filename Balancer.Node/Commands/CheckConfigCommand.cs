namespace Balancer.Node.Commands;

/// <summary><c>balancer check-config FILE...</c>: prints every problem, one per line; exit 1 if any.</summary>
internal static class CheckConfigCommand
{
    public const string Usage = "balancer check-config FILE... [--set key=value]...";

    public static int Run(CommandLine args, TextWriter output, TextWriter error)
    {
        var sets = args.All("set");
        args.RejectUnknown();
        if (args.Positional.Count == 0)
        {
            throw new UsageException("check-config needs at least one FILE");
        }
        var failed = false;
        foreach (var file in args.Positional)
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
