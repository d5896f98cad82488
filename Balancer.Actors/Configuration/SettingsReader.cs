using System.Globalization;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Balancer.Configuration;

/// <summary>
/// Reads typed values from one HOCON section and records a problem (key path + what was expected)
/// for every value that cannot be used, so that one pass reports every mistake at once.
/// </summary>
internal sealed class SettingsReader
{
    private readonly Config _config;
    private readonly string _path;
    private readonly List<ConfigProblem> _problems;

    public SettingsReader(Config config, string path, List<ConfigProblem> problems)
    {
        _config = config;
        _path = path;
        _problems = problems;
    }

    public string PathOf(string key) => _path + "." + key;

    public void Problem(string key, string expected) => _problems.Add(new ConfigProblem(PathOf(key), expected));

    public SettingsReader Section(string key, Config? fallback = null)
    {
        var section = _config.HasPath(key) ? _config.GetConfig(key) : Config.Empty;
        if (fallback is not null)
        {
            section = section.WithFallback(fallback);
        }
        return new SettingsReader(section, PathOf(key), _problems);
    }

    public bool Has(string key) => _config.HasPath(key);

    public HoconValue? Value(string key) => _config.HasPath(key) ? _config.GetValue(key) : null;

    public string String(string key, string fallback = "")
    {
        var value = Value(key);
        if (value is null)
        {
            return fallback;
        }
        if (!value.IsString())
        {
            Problem(key, "expected a single value, got an object or a list");
            return fallback;
        }
        return value.GetString() ?? fallback;
    }

    public string Choice(string key, string fallback, params string[] allowed)
    {
        var text = String(key, fallback);
        if (Array.IndexOf(allowed, text) < 0)
        {
            Problem(key, $"expected one of {string.Join(" | ", allowed)}, got \"{text}\"");
            return fallback;
        }
        return text;
    }

    public bool Bool(string key, bool fallback)
    {
        var text = String(key, fallback ? "on" : "off");
        switch (text.ToLowerInvariant())
        {
            case "on" or "true" or "yes":
                return true;
            case "off" or "false" or "no":
                return false;
            default:
                Problem(key, $"expected on | off, got \"{text}\"");
                return fallback;
        }
    }

    public int Int(string key, int fallback, int min, int max)
    {
        var text = String(key, fallback.ToString(CultureInfo.InvariantCulture));
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) || number < min || number > max)
        {
            Problem(key, $"expected a whole number from {min} to {max}, got \"{text}\"");
            return fallback;
        }
        return number;
    }

    public TimeSpan Duration(string key, TimeSpan fallback, bool allowZero = false)
    {
        var value = Value(key);
        if (value is null)
        {
            return fallback;
        }
        var text = value.IsString() ? value.GetString() : "";
        try
        {
            var duration = value.GetTimeSpan(allowInfinite: false);
            if (duration < TimeSpan.Zero || (!allowZero && duration == TimeSpan.Zero))
            {
                Problem(key, $"expected a {(allowZero ? "non-negative" : "positive")} duration such as 500ms, 5s or 2m, got \"{text}\"");
                return fallback;
            }
            return duration;
        }
        catch (Exception)
        {
            Problem(key, $"expected a duration such as 500ms, 5s or 2m, got \"{text}\"");
            return fallback;
        }
    }

    /// <summary>A share written "50%" or "0.5"; returned as 0..1.</summary>
    public double Percent(string key, double fallback)
    {
        var text = String(key, "").Trim();
        if (text.Length == 0)
        {
            return fallback;
        }
        var isPercent = text.EndsWith('%');
        var number = isPercent ? text[..^1] : text;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed))
        {
            Problem(key, $"expected a percentage such as 50%, got \"{text}\"");
            return fallback;
        }
        var share = isPercent || parsed > 1 ? parsed / 100 : parsed;
        if (share is < 0 or > 1)
        {
            Problem(key, $"expected a percentage from 0% to 100%, got \"{text}\"");
            return fallback;
        }
        return share;
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
                Problem(key, $"unknown key (expected one of: {string.Join(", ", known.Order(StringComparer.Ordinal))})");
            }
        }
    }

    public Config Raw => _config;
}

/// <summary>One thing wrong with a configuration: the key path and what was expected.</summary>
public sealed record ConfigProblem(string Path, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{Path}: {Message}";
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
