using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Balancer.Node;

/// <summary>
/// Builds a node's configuration: <c>--set</c> values over the <c>--config</c> files (later files
/// win; <c>include "file"</c> is resolved beside the including file) over the node defaults over
/// Balancer's cluster tuning over reference.conf.
/// </summary>
internal static class NodeConfig
{
    /// <summary>
    /// Akka settings a standalone node needs beyond Balancer's cluster tuning
    /// (<see cref="Hosting.ClusterTuning"/>); every one can be overridden by the files.
    /// </summary>
    public const string NodeDefaults = """
        akka {
          loglevel = INFO
          stdout-loglevel = WARNING
          log-dead-letters-during-shutdown = off
          log-dead-letters = 0
          actor.provider = cluster
          remote.dot-netty.tcp {
            hostname = "127.0.0.1"
            port = 4053
          }
          cluster {
            # Empty: the node forms a cluster of one with itself. Otherwise every node lists the
            # same seeds (BALANCER_SEED_NODES="akka.tcp://balancer@host:4053,..." sets them too).
            seed-nodes = []
          }
          coordinated-shutdown.run-by-clr-shutdown-hook = on
        }
        # A node is managed through its admin API (balancer ctl, the status page, /metrics), and
        # keeps runtime changes across a full-cluster restart.
        balancer.node.admin.enabled = on
        balancer.node.data-dir = "data"
        """;

    /// <summary>Comma-separated seed node addresses; overrides the files, not --set.</summary>
    public const string SeedNodesVariable = "BALANCER_SEED_NODES";

    /// <summary>The host and port this node's remoting listens on, as NodeDefaults sets them.</summary>
    internal static (string Host, int Port) RemotingEndPoint(Config config) =>
        (config.GetString("akka.remote.dot-netty.tcp.hostname", "127.0.0.1"), config.GetInt("akka.remote.dot-netty.tcp.port", 4053));

    /// <summary>The folder of this node's durable store as its configuration puts it (at its configured remoting endpoint), or null when it keeps nothing on disk.</summary>
    internal static string? DurableDirectory(Config config)
    {
        var (host, port) = RemotingEndPoint(config);
        return Replication.BalancerReplicator.DurableDirectory(config, host, port);
    }

    /// <summary>How long a restarted first seed node waits for the running cluster before it forms one of its own.</summary>
    public static readonly TimeSpan RestartedFirstSeedTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// A node listed first among the seeds forms a new cluster by itself when no other seed answers
    /// within <c>seed-node-timeout</c> (Akka's 5 s). Right after a crash, on a loaded host, the
    /// survivors can take longer than that, and the restarted node then serves alone as a second
    /// cluster (its own sessions, its own health). A node that has run before (its durable folder
    /// exists) and is the first seed therefore waits <see cref="RestartedFirstSeedTimeout"/> instead;
    /// a first start, and an explicit <c>seed-node-timeout</c>, are left as they are.
    /// </summary>
    public static Config WithRestartedFirstSeedTimeout(Config config)
    {
        var seeds = config.GetStringList("akka.cluster.seed-nodes");
        if (seeds.Count < 2 || config.HasPath("akka.cluster.seed-node-timeout"))
        {
            return config;
        }
        var (host, port) = RemotingEndPoint(config);
        var first = Akka.Actor.Address.Parse(seeds[0]);
        var durable = DurableDirectory(config);
        if (first.Host != host || first.Port != port || durable is null || !Directory.Exists(durable))
        {
            return config;
        }
        return ConfigurationFactory.ParseString($"akka.cluster.seed-node-timeout = {(int)RestartedFirstSeedTimeout.TotalSeconds}s").WithFallback(config);
    }

    /// <summary>
    /// The configuration of a node's next incarnation after its cluster removed it: it joins
    /// through the members it saw and the other seeds, never through itself (its configured
    /// host:port, or the address it had). A first seed that listed itself would otherwise form a
    /// cluster of its own when the others do not answer in time (a partition not healed yet), and
    /// serve as a second cluster that never merges back; this way it keeps asking until they answer,
    /// serving meanwhile. A node that knew no other member (a cluster of one) joins itself as before.
    /// </summary>
    public static Config ForRejoin(Config config, IEnumerable<Akka.Actor.Address> peers, Akka.Actor.Address? self)
    {
        var (host, port) = RemotingEndPoint(config);
        bool IsSelf(Akka.Actor.Address address) =>
            address.Equals(self) || (address.Host == host && address.Port == port);
        var seeds = peers.Select(p => p.ToString())
            .Concat(config.GetStringList("akka.cluster.seed-nodes"))
            .Where(seed => !IsSelf(Akka.Actor.Address.Parse(seed)))
            .Distinct()
            .ToList();
        return seeds.Count == 0
            ? config
            : ConfigurationFactory.ParseString($"akka.cluster.seed-nodes = [{string.Join(", ", seeds.Select(s => $"\"{s}\""))}]").WithFallback(config);
    }

    /// <summary>Loads and merges; a file that cannot be read or parsed throws <see cref="ConfigLoadException"/>.</summary>
    public static Config Load(IReadOnlyList<string> files, IReadOnlyList<string> sets)
    {
        var config = Config.Empty;
        // The last --set of a key wins, as the last file does.
        foreach (var set in sets.Reverse())
        {
            config = config.WithFallback(ParseSet(set));
        }
        if (Environment.GetEnvironmentVariable(SeedNodesVariable) is { Length: > 0 } seeds)
        {
            var list = seeds.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            config = config.WithFallback(ConfigurationFactory.ParseString($"akka.cluster.seed-nodes = [{string.Join(", ", list.Select(s => $"\"{s}\""))}]"));
        }
        foreach (var file in files.Reverse())
        {
            config = config.WithFallback(LoadFile(file));
        }
        return config
            .WithFallback(ConfigurationFactory.ParseString(NodeDefaults))
            .WithFallback(Hosting.ClusterTuning.Config)
            .WithFallback(BalancerSettings.DefaultConfig());
    }

    /// <summary>Parses one file, resolving includes relative to it.</summary>
    public static Config LoadFile(string path) => new(ParseFile(path, Path.GetFullPath(path), new HashSet<string>()));

    /// <summary>Every file <paramref name="files"/> read, included ones too (full paths; those that cannot be read are left out).</summary>
    public static IReadOnlyList<string> FilesRead(IReadOnlyList<string> files)
    {
        var read = new List<string>();
        foreach (var file in files)
        {
            try
            {
                ParseFile(file, Path.GetFullPath(file), new HashSet<string>(), read);
            }
            catch (ConfigLoadException)
            {
                // The files read before the mistake are listed; a reload says what is wrong.
            }
        }
        return read.Distinct().ToList();
    }

    /// <summary>
    /// Reads and parses <paramref name="full"/>; errors name <paramref name="shown"/> (as the user
    /// wrote it) with line and column. <paramref name="chain"/> holds the files being included, so
    /// that a file including itself is an error rather than a stack overflow.
    /// </summary>
    private static HoconRoot ParseFile(string shown, string full, HashSet<string> chain, List<string>? read = null)
    {
        if (!chain.Add(full))
        {
            throw new ConfigLoadException($"{shown}: included from itself");
        }
        read?.Add(full);
        string text;
        try
        {
            text = File.ReadAllText(full);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ConfigLoadException($"{shown}: no such file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigLoadException($"{shown}: cannot read: {e.Message}");
        }
        try
        {
            var directory = Path.GetDirectoryName(full)!;
            return Parser.Parse(text, include => ParseFile(Path.Combine(directory, include), Path.GetFullPath(Path.Combine(directory, include)), chain, read));
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
