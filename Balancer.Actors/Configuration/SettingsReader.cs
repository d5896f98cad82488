using System.Collections.Immutable;
using System.Globalization;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Balancer.Configuration;

/// <summary>
/// Reads typed values from one HOCON section and records a problem (key path + what was expected)
/// for every value that cannot be used, so that one pass reports every mistake at once. Every key
/// has its default in reference.conf and nowhere else: a value that cannot be used is reported and
/// replaced by that default (so that one mistake does not cause others), and a key reference.conf
/// lacks is a defect of the library, not of the configuration.
/// </summary>
internal sealed class SettingsReader
{
    /// <summary>A parser of one type of value (HashKey.TryParse, StatusCodeRanges.TryParse).</summary>
    public delegate bool TryParser<T>(string text, out T value);

    private readonly Config _config;
    private readonly Config _defaults;
    private readonly string _path;
    private readonly List<ConfigProblem> _problems;

    /// <summary>A reader of <paramref name="config"/> (the user's section) over <paramref name="defaults"/> (reference.conf's).</summary>
    public SettingsReader(Config config, Config defaults, string path, List<ConfigProblem> problems)
    {
        _config = config.WithFallback(defaults);
        _defaults = defaults;
        _path = path;
        _problems = problems;
    }

    /// <summary>The problems of the whole configuration, shared by every reader of it.</summary>
    public List<ConfigProblem> ProblemList => _problems;

    public string PathOf(string key) => _path + "." + key;

    public void Problem(string key, string expected) => _problems.Add(new ConfigProblem(PathOf(key), expected));

    /// <summary>The section <paramref name="key"/>; its defaults are reference.conf's at the same path unless <paramref name="defaults"/> names others (<c>pool-defaults</c> for a pool).</summary>
    public SettingsReader Section(string key, Config? defaults = null)
    {
        var section = _config.HasPath(key) ? _config.GetConfig(key) : Config.Empty;
        return new SettingsReader(section, defaults ?? (_defaults.HasPath(key) ? _defaults.GetConfig(key) : Config.Empty), PathOf(key), _problems);
    }

    public bool Has(string key) => _config.HasPath(key);

    /// <summary>True when <paramref name="key"/> is set to null: what an included file defined is taken away.</summary>
    public bool IsRemoved(string key) => !_config.HasPath(key) || Value(key) is { } value && value.IsString() && value.GetString() is null;

    public HoconValue? Value(string key) => _config.HasPath(key) ? _config.GetValue(key) : null;

    public string String(string key) => Read(key, ParseString);

    public string Choice(string key, params string[] allowed) => Read(key, value =>
    {
        var (text, problem) = ParseString(value);
        return problem is null && Array.IndexOf(allowed, text) < 0
            ? (text, $"expected one of {string.Join(" | ", allowed)}, got \"{text}\"")
            : (text, problem);
    });

    public bool Bool(string key) => Read(key, value =>
    {
        var (text, problem) = ParseString(value);
        return problem is not null ? (false, problem) : text.ToLowerInvariant() switch
        {
            "on" or "true" or "yes" => (true, null),
            "off" or "false" or "no" => (false, null),
            _ => (false, $"expected on | off, got \"{text}\""),
        };
    });

    public int Int(string key, int min, int max) => Read(key, value =>
    {
        var (text, problem) = ParseString(value);
        if (problem is not null)
        {
            return (0, problem);
        }
        return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? (number, null)
            : (0, $"expected a whole number from {min} to {max}, got \"{text}\"");
    });

    public TimeSpan Duration(string key, bool allowZero = false) => Read(key, value =>
    {
        if (value is null)
        {
            return (TimeSpan.Zero, "missing");
        }
        var text = value.IsString() ? value.GetString() : "";
        try
        {
            var duration = value.GetTimeSpan(allowInfinite: false);
            return duration < TimeSpan.Zero || (!allowZero && duration == TimeSpan.Zero)
                ? (duration, $"expected a {(allowZero ? "non-negative" : "positive")} duration such as 500ms, 5s or 2m, got \"{text}\"")
                : (duration, null);
        }
        catch (Exception)
        {
            return (TimeSpan.Zero, $"expected a duration such as 500ms, 5s or 2m, got \"{text}\"");
        }
    });

    /// <summary>A value of a type with its own parser; <paramref name="expected"/> says what a usable value looks like.</summary>
    public T Parsed<T>(string key, TryParser<T> tryParse, string expected) => Read<T>(key, value =>
    {
        var (text, problem) = ParseString(value);
        if (problem is not null)
        {
            return (default!, problem);
        }
        return tryParse(text, out var parsed) ? (parsed, null) : (default!, $"expected {expected}, got \"{text}\"");
    });

    /// <summary>A duration, or null for <c>off</c>.</summary>
    public TimeSpan? DurationOrOff(string key)
    {
        var text = Value(key) is { } value && value.IsString() ? value.GetString() : null;
        return text is "off" or "" ? null : Duration(key);
    }

    /// <summary>A HOST:PORT (port 0 allowed with <paramref name="allowAnyPort"/>).</summary>
    public EndpointAddress Address(string key, bool allowAnyPort = false) => Read<EndpointAddress>(key, value =>
    {
        var (text, problem) = ParseString(value);
        if (problem is not null)
        {
            return (null!, problem);
        }
        return EndpointAddress.TryParse(text, out var address, out var error, allowAnyPort) ? (address, null) : (null!, error);
    });

    /// <summary>A share written "50%" or "0.5"; returned as 0..1.</summary>
    public double Percent(string key) => Read(key, value =>
    {
        var (raw, problem) = ParseString(value);
        if (problem is null && raw.Trim().Length == 0 && !ReferenceEquals(value, DefaultValue(key)))
        {
            // Empty: the default, as an unset key would have it.
            (raw, problem) = ParseString(DefaultValue(key));
        }
        if (problem is not null)
        {
            return (0, problem);
        }
        var text = raw.Trim();
        var isPercent = text.EndsWith('%');
        if (!double.TryParse(isPercent ? text[..^1] : text, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed))
        {
            return (0, $"expected a percentage such as 50%, got \"{text}\"");
        }
        var share = isPercent || parsed > 1 ? parsed / 100 : parsed;
        return share is < 0 or > 1 ? (share, $"expected a percentage from 0% to 100%, got \"{text}\"") : (share, null);
    });

    /// <summary>
    /// Parses <paramref name="key"/>; when the value cannot be used, reports it and parses the
    /// default instead. A key without any default is a defect of reference.conf; a default that
    /// cannot be used either (a bad <c>pool-defaults</c> value the section inherits) leaves the
    /// type's empty value, which nothing runs with: the configuration has a problem reported.
    /// </summary>
    private T Read<T>(string key, Func<HoconValue?, (T Value, string? Problem)> parse)
    {
        var (value, problem) = parse(Value(key));
        if (problem is null)
        {
            return value;
        }
        var defaultValue = DefaultValue(key);
        if (defaultValue is null && Value(key) is null)
        {
            throw new InvalidOperationException($"reference.conf has no default for {PathOf(key)}");
        }
        Problem(key, problem);
        if (defaultValue is null)
        {
            // A key with no default (a backend's address) given in an unusable form.
            return default!;
        }
        var (fallback, broken) = parse(defaultValue);
        return broken is null ? fallback : default!;
    }

    private HoconValue? DefaultValue(string key) => _defaults.HasPath(key) ? _defaults.GetValue(key) : null;

    private static (string Value, string? Problem) ParseString(HoconValue? value) => value switch
    {
        null => ("", "missing"),
        _ when !value.IsString() => ("", "expected a single value, got an object or a list"),
        _ => (value.GetString() ?? "", null),
    };

    /// <summary>A list of absolute http:// or https:// URLs (webhooks, etcd endpoints); each other entry is a problem.</summary>
    public ImmutableArray<Uri> HttpUrls(string key)
    {
        var urls = ImmutableArray.CreateBuilder<Uri>();
        foreach (var text in StringList(key))
        {
            if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            {
                urls.Add(uri);
            }
            else
            {
                Problem(key, $"\"{text}\" is not an absolute http:// or https:// URL");
            }
        }
        return urls.ToImmutable();
    }

    /// <summary>A list of strings that may also be written as one string.</summary>
    public IReadOnlyList<string> StringList(string key)
    {
        var value = Value(key);
        if (value is null)
        {
            return Array.Empty<string>();
        }
        if (value.IsArray())
        {
            var items = new List<string>();
            foreach (var item in value.GetArray())
            {
                if (!item.IsString())
                {
                    Problem(key, "expected a list of strings");
                    continue;
                }
                items.Add(item.GetString());
            }
            return items;
        }
        if (value.IsString())
        {
            return new[] { value.GetString() };
        }
        if (!value.IsObject())
        {
            // The parser reports an empty list as neither a list nor a string.
            return Array.Empty<string>();
        }
        Problem(key, "expected a string or a list of strings");
        return Array.Empty<string>();
    }

    /// <summary>The names of the entries of an object-valued key (pools, frontends, backends).</summary>
    public IReadOnlyList<string> ObjectKeys(string key)
    {
        var value = Value(key);
        if (value is null)
        {
            return Array.Empty<string>();
        }
        if (!value.IsObject())
        {
            Problem(key, "expected an object { NAME { ... } }");
            return Array.Empty<string>();
        }
        return value.GetObject().Items.Keys.ToList();
    }

    /// <summary>Reports every key of this section that <paramref name="known"/> does not name.</summary>
    public void RejectUnknownKeys(IReadOnlyCollection<string> known, Config userSection)
    {
        if (userSection.IsEmpty || !userSection.Root.IsObject())
        {
            return;
        }
        foreach (var key in userSection.Root.GetObject().Items.Keys)
        {
            if (!known.Contains(key))
            {
                var nearest = Nearest(key, known);
                Problem(key, $"unknown key ({(nearest is null ? "" : $"did you mean \"{nearest}\"? ")}expected one of: {string.Join(", ", known.Order(StringComparer.Ordinal))})");
            }
        }
    }

    public Config Raw => _config;

    /// <summary>The known key a misspelt <paramref name="key"/> most likely meant: fewest edits, at most a third of its length (and at least 1, at most 3).</summary>
    internal static string? Nearest(string key, IEnumerable<string> known)
    {
        var allowed = Math.Clamp(key.Length / 3, 1, 3);
        return known.Select(k => (Key: k, Distance: EditDistance(key, k)))
            .Where(c => c.Distance <= allowed)
            .OrderBy(c => c.Distance).ThenBy(c => c.Key, StringComparer.Ordinal)
            .Select(c => c.Key).FirstOrDefault();
    }

    /// <summary>Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours.</summary>
    private static int EditDistance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }
        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }
        return d[a.Length, b.Length];
    }

    public static void CheckName(SettingsReader parent, string name, string what)
    {
        if (!BackendRules.IsValidName(name))
        {
            parent.Problem(name, $"a {what} name uses {BackendRules.NameRule}");
        }
    }

    public static Config Sub(Config config, string key) => config.HasPath(key) ? config.GetConfig(key) : Config.Empty;

    public static IReadOnlyCollection<string> KeysOf(Config section) =>
        section.IsEmpty || !section.Root.IsObject() ? Array.Empty<string>() : section.Root.GetObject().Items.Keys.ToHashSet();
}

/// <summary>One thing wrong with a configuration: the key path and what was expected.</summary>
public sealed record ConfigProblem(string Path, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{Path}: {Message}";

    /// <summary>The problem a line of <see cref="ToString"/>'s form states (a line without a key is kept whole).</summary>
    public static ConfigProblem Parse(string line) =>
        line.IndexOf(": ", StringComparison.Ordinal) is > 0 and var colon && !line[..colon].Contains(' ')
            ? new ConfigProblem(line[..colon], line[(colon + 2)..])
            : new ConfigProblem("configuration", line);
}

/// <summary>Thrown when a configuration cannot be used; <see cref="Problems"/> lists every mistake.</summary>
public sealed class BalancerConfigException : Exception
{
    /// <summary>Creates the exception from the problems found.</summary>
    public BalancerConfigException(IReadOnlyList<ConfigProblem> problems)
        : base("invalid balancer configuration:" + Environment.NewLine + string.Join(Environment.NewLine, problems))
    {
        Problems = problems;
    }

    /// <summary>Every problem found, one per key.</summary>
    public IReadOnlyList<ConfigProblem> Problems { get; }
}
