namespace Balancer.Node;

/// <summary>A command line mistake; printed as one line with the usage of the verb, exit code 2.</summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message) : base(message)
    {
    }
}

/// <summary>
/// A small option parser: "--name value", "--name=value" and flags, each option declared by the
/// command that reads it so that an unknown or misspelt option is an error, never ignored.
/// </summary>
internal sealed class CommandLine
{
    private readonly List<(string Name, string? Value)> _options = new();
    private readonly HashSet<string> _consumed = new();

    public CommandLine(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            var arg = list[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                Positional.Add(arg);
                continue;
            }
            var eq = arg.IndexOf('=');
            if (eq > 0)
            {
                _options.Add((arg[2..eq], arg[(eq + 1)..]));
            }
            else if (flags.Contains(arg[2..]))
            {
                _options.Add((arg[2..], null));
            }
            else if (i + 1 < list.Count)
            {
                _options.Add((arg[2..], list[++i]));
            }
            else
            {
                throw new UsageException($"option {arg} needs a value");
            }
        }
    }

    public List<string> Positional { get; } = new();

    public bool Flag(string name)
    {
        _consumed.Add(name);
        return _options.Any(o => o.Name == name);
    }

    public IReadOnlyList<string> All(string name)
    {
        _consumed.Add(name);
        return _options.Where(o => o.Name == name).Select(o => o.Value ?? "").ToList();
    }

    public string? One(string name)
    {
        var values = All(name);
        if (values.Count > 1)
        {
            throw new UsageException($"option --{name} is given {values.Count} times; give it once");
        }
        return values.Count == 0 ? null : values[0];
    }

    public int Int(string name, int fallback, int min, int max)
    {
        var text = One(name);
        if (text is null)
        {
            return fallback;
        }
        if (!int.TryParse(text, out var value) || value < min || value > max)
        {
            throw new UsageException($"--{name} expects a whole number from {min} to {max}, got \"{text}\"");
        }
        return value;
    }

    public double Double(string name, double fallback, double min, double max)
    {
        var text = One(name);
        if (text is null)
        {
            return fallback;
        }
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new UsageException($"--{name} expects a number from {min} to {max}, got \"{text}\"");
        }
        return value;
    }

    /// <summary>Fails on any option the command did not read.</summary>
    public void RejectUnknown()
    {
        foreach (var (name, _) in _options)
        {
            if (!_consumed.Contains(name))
            {
                throw new UsageException($"unknown option --{name}");
            }
        }
    }
}
