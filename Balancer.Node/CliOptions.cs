using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Balancer.Node;

/// <summary>A command line mistake found after parsing (options that go together, a missing file): one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The pieces every verb of <c>balancer</c> shares on System.CommandLine: ranged options whose
/// mistakes read alike, the exit codes (0 ok, 1 failed, 2 usage), and parse errors as one line each.
/// </summary>
internal static class CliOptions
{
    public const int Failed = 1;
    public const int Usage = 2;

    /// <summary>A whole-number option in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<int> WholeNumber(string name, string description, int min, int max, int? fallback)
    {
        var option = new Option<int>(name) { Description = description, HelpName = "N" };
        if (fallback is { } value)
        {
            // A default also satisfies Required: a required option has none.
            option.DefaultValueFactory = _ => value;
        }
        option.CustomParser = result => ParseWholeNumber(result, name, min, max);
        return option;
    }

    /// <summary>A whole-number argument in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Argument<int> WholeNumberArgument(string name, string description, int min, int max, int? fallback = null)
    {
        var argument = new Argument<int>(name) { Description = description };
        if (fallback is { } value)
        {
            argument.Arity = ArgumentArity.ZeroOrOne;
            argument.DefaultValueFactory = _ => value;
        }
        argument.CustomParser = result => ParseWholeNumber(result, name, min, max);
        return argument;
    }

    private static int ParseWholeNumber(ArgumentResult result, string name, int min, int max)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Join(' ', result.Tokens.Select(t => t.Value));
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }
        result.AddError($"{name} expects a whole number from {min} to {max}, got \"{text}\"");
        return min;
    }

    /// <summary>A number option in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<double> Number(string name, string description, double min, double max, double fallback)
    {
        var option = new Option<double>(name) { Description = description, HelpName = "X", DefaultValueFactory = _ => fallback };
        option.CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            {
                return value;
            }
            result.AddError($"{name} expects a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}, got \"{text}\"");
            return min;
        };
        return option;
    }

    /// <summary>
    /// Parse errors, one line each under <paramref name="prefix"/>, then the library's "did you mean"
    /// for a misspelt verb or option, then where help is. Always <see cref="Usage"/>.
    /// </summary>
    public static int ReportParseErrors(ParseResult parse, TextWriter error, string prefix, string? firstProblem = null, bool inPrompt = false)
    {
        if (firstProblem is not null)
        {
            error.WriteLine($"{prefix}: {firstProblem}");
        }
        // A value that is wrong names the mistake best; a missing subcommand is often only its consequence.
        var errors = parse.Errors
            .OrderBy(e => e.SymbolResult is ArgumentResult or OptionResult ? 0 : parse.UnmatchedTokens.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal)) ? 1 : 2)
            .ToList();
        foreach (var message in errors.Select(e => e.Message).Distinct())
        {
            error.WriteLine($"{prefix}: {message}");
        }
        if (firstProblem is null && parse.UnmatchedTokens.Count > 0 && errors[0].SymbolResult is not (ArgumentResult or OptionResult) && parse.Action is ParseErrorAction typos)
        {
            // Only the library's typo corrections: the errors themselves are printed above, in our form.
            typos.ShowHelp = false;
            typos.ShowTypoCorrections = true;
            var corrections = new StringWriter();
            parse.Invoke(new InvocationConfiguration { Output = corrections, Error = TextWriter.Null });
            foreach (var line in corrections.ToString().Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0))
            {
                error.WriteLine(line);
            }
        }
        error.WriteLine($"run `{CommandPath(parse.CommandResult, inPrompt)} --help` for usage");
        return Usage;
    }

    /// <summary>"balancer ctl backend": the words that name <paramref name="result"/>'s command.</summary>
    public static string CommandPath(CommandResult result, bool inPrompt = false)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
        {
            if (r is CommandResult command)
            {
                if (command.Command is not RootCommand || !inPrompt)
                {
                    names.Add(command.Command is RootCommand ? "balancer" : command.Command.Name);
                }
            }
        }
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>
    /// How every command line and prompt line is parsed: no response files, so an argument that
    /// starts with @ (a session key, a --set value) is taken as it is, never as a file to read.
    /// </summary>
    public static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    /// <summary>How a run of <c>balancer</c> is invoked: our own signal handling (drains take longer than the library's 2 s), our own exception lines.</summary>
    public static InvocationConfiguration Invocation(TextWriter output, TextWriter error) => new()
    {
        Output = output,
        Error = error,
        ProcessTerminationTimeout = null,
        EnableDefaultExceptionHandler = false,
    };
}
