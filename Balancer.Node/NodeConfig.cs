using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Balancer.Node;

/// <summary>
/// Builds a node's configuration: <c>--set</c> values over the <c>--config</c> files (later files
/// win; <c>include "file"</c> is resolved beside the including file) over the node defaults over
/// reference.conf.
/// </summary>
internal static class NodeConfig
{
    /// <summary>Akka settings a standalone node needs; every one can be overridden by the files.</summary>
    public const string NodeDefaults = """
        akka {
          loglevel = INFO
          stdout-loglevel = WARNING
          log-dead-letters-during-shutdown = off
          actor.provider = cluster
          remote.dot-netty.tcp {
            hostname = "127.0.0.1"
            port = 4053
          }
          cluster {
            # Empty: the node forms a cluster of one with itself.
            seed-nodes = []
          }
          coordinated-shutdown.run-by-clr-shutdown-hook = on
        }
        """;

    /// <summary>Loads and merges; a file that cannot be read or parsed throws <see cref="ConfigLoadException"/>.</summary>
    public static Config Load(IReadOnlyList<string> files, IReadOnlyList<string> sets)
    {
        var config = Config.Empty;
        foreach (var set in sets)
        {
            config = config.WithFallback(ParseSet(set));
        }
        foreach (var file in files.Reverse())
        {
            config = config.WithFallback(LoadFile(file));
        }
        return config
            .WithFallback(ConfigurationFactory.ParseString(NodeDefaults))
            .WithFallback(BalancerSettings.DefaultConfig());
    }

    /// <summary>Parses one file, resolving includes relative to it.</summary>
    public static Config LoadFile(string path) => new(ParseFile(path, Path.GetFullPath(path), new HashSet<string>()));

    /// <summary>
    /// Reads and parses <paramref name="full"/>; errors name <paramref name="shown"/> (as the user
    /// wrote it) with line and column. <paramref name="chain"/> holds the files being included, so
    /// that a file including itself is an error rather than a stack overflow.
    /// </summary>
    private static HoconRoot ParseFile(string shown, string full, HashSet<string> chain)
    {
        if (!chain.Add(full))
        {
            throw new ConfigLoadException($"{shown}: included from itself");
        }
        string text;
        try
        {
            text = File.ReadAllText(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigLoadException($"{shown}: cannot read: {e.Message}");
        }
        try
        {
            var directory = Path.GetDirectoryName(full)!;
            return Parser.Parse(text, include => ParseFile(Path.Combine(directory, include), Path.GetFullPath(Path.Combine(directory, include)), chain));
        }
        catch (ConfigLoadException)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new ConfigLoadException($"{shown}{Where(text, e.Message)}: {Describe(text, e.Message)}");
        }
        finally
        {
            chain.Remove(full);
        }
    }

    /// <summary>The parser's message without its raw position, with a hint for the commonest mistake.</summary>
    private static string Describe(string text, string message)
    {
        var described = System.Text.RegularExpressions.Regex.Replace(FirstLine(message), @"\s*at position \d+:?", "").Trim();
        var match = System.Text.RegularExpressions.Regex.Match(message, @"position (\d+)");
        if (match.Success && int.TryParse(match.Groups[1].Value, out var position))
        {
            var before = text[..Math.Clamp(position + 1, 0, text.Length)].TrimEnd();
            if (before.EndsWith(',') && before[..^1].TrimEnd().EndsWith('}'))
            {
                described += " (after \"NAME { ... }\" start the next entry on a new line instead of a comma)";
            }
        }
        return described.Length == 0 ? "invalid HOCON" : described;
    }

    /// <summary>":LINE:COLUMN" for a parser message that names a character position.</summary>
    private static string Where(string text, string message)
    {
        var match = System.Text.RegularExpressions.Regex.Match(message, @"position (\d+)");
        if (!match.Success || !int.TryParse(match.Groups[1].Value, out var position))
        {
            return "";
        }
        position = Math.Clamp(position, 0, text.Length);
        var line = 1;
        var lineStart = 0;
        for (var i = 0; i < position; i++)
        {
            if (text[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }
        return $":{line}:{position - lineStart + 1}";
    }

    private static Config ParseSet(string set)
    {
        var eq = set.IndexOf('=');
        if (eq <= 0)
        {
            throw new ConfigLoadException($"--set {set}: expected key=value");
        }
        var key = set[..eq].Trim();
        var value = set[(eq + 1)..].Trim();
        // Values that HOCON would read as something else (addresses, paths) are quoted.
        var literal = value.StartsWith('[') || value.StartsWith('{') || value.StartsWith('"') ? value : "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        try
        {
            return ConfigurationFactory.ParseString($"{key} = {literal}");
        }
        catch (Exception e)
        {
            throw new ConfigLoadException($"--set {set}: {FirstLine(e.Message)}");
        }
    }

    private static string FirstLine(string message)
    {
        var line = message.Split('\n')[0].Trim();
        return line.Length == 0 ? "invalid HOCON" : line;
    }
}

/// <summary>A configuration file that cannot be read or parsed; the message names the file.</summary>
internal sealed class ConfigLoadException : Exception
{
    public ConfigLoadException(string message) : base(message)
    {
    }
}
