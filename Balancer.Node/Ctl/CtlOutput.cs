using System.Globalization;
using System.Text.Json;

namespace Balancer.Node.Ctl;

/// <summary>How `ctl` shows the admin API's JSON to people (`--json` prints it as is).</summary>
internal static class CtlOutput
{
    public static void Cluster(JsonElement cluster, TextWriter output)
    {
        MembersTable(cluster).WriteTo(output);
        var members = cluster.GetProperty("members").EnumerateArray().ToList();
        var up = members.Count(m => m.GetProperty("status").GetString() == "up");
        var unreachable = members.Count(m => !m.GetProperty("reachable").GetBoolean());
        output.WriteLine($"Count: {members.Count} members, {up} up, {unreachable} unreachable ({cluster.GetProperty("mode").GetString()})");
    }

    /// <summary>The members as `cluster show` and `top` list them.</summary>
    public static TextTable MembersTable(JsonElement cluster)
    {
        var leader = cluster.GetProperty("leader").GetString();
        var self = cluster.GetProperty("self").GetString();
        var table = new TextTable("ADDRESS", "ROLES", "STATUS", "REACHABILITY", "DUTY", "CONFIG", "");
        foreach (var member in cluster.GetProperty("members").EnumerateArray())
        {
            var address = member.GetProperty("address").GetString();
            var roles = string.Join(",", member.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
            var duty = member.GetProperty("duty").GetString();
            var notes = string.Join(" ", new[] { address == leader ? "leader" : null, address == self ? "(this node)" : null }.Where(n => n is not null));
            table.Row(address, roles.Length == 0 ? "[]" : $"[{roles}]", member.GetProperty("status").GetString(),
                member.GetProperty("reachable").GetBoolean() ? "reachable" : "UNREACHABLE", duty, ConfigCell(member), notes);
        }
        return table;
    }

    /// <summary>"v3 1a2b3c4d5e6f", "files 1a2b3c4d5e6f" (no cluster configuration applied), with DRIFT when the member runs other pools than most.</summary>
    private static string ConfigCell(JsonElement member)
    {
        if (!member.TryGetProperty("config", out var config) || config.ValueKind != JsonValueKind.Object)
        {
            return "-";
        }
        var version = config.GetProperty("version").GetInt64();
        var cell = $"{(version == 0 ? "files" : "v" + version)} {config.GetProperty("fingerprint").GetString()}";
        return member.TryGetProperty("configDrift", out var drift) && drift.GetBoolean() ? cell + " DRIFT" : cell;
    }

    public static void Pools(JsonElement pools, TextWriter output)
    {
        var table = new TextTable("POOL", "ALGORITHM", "AFFINITY", "HEALTHY", "ROUTABLE", "REQUESTS", "IN FLIGHT", "RETRIES", "SESSIONS", "");
        foreach (var pool in pools.EnumerateArray())
        {
            table.Row(
                pool.GetProperty("name").GetString(),
                pool.GetProperty("algorithm").GetString(),
                pool.GetProperty("affinity").GetString(),
                $"{pool.GetProperty("healthy").GetInt32()}/{pool.GetProperty("backends").GetInt32()}",
                pool.GetProperty("routable").GetInt32(),
                pool.GetProperty("requests").GetInt64(),
                pool.GetProperty("inFlight").GetInt64(),
                pool.GetProperty("retries").GetInt64(),
                pool.GetProperty("affinityEntries").ValueKind == JsonValueKind.Null ? null : pool.GetProperty("affinityEntries").GetInt32(),
                pool.GetProperty("panic").GetBoolean() ? "PANIC" : "");
        }
        table.WriteTo(output);
        output.WriteLine(ThisNodesCounts);
    }

    public static void Backends(JsonElement backends, TextWriter output)
    {
        var table = new TextTable("BACKEND", "ADDRESS", "HEALTH", "STATE", "WEIGHT", "IN FLIGHT", "REQUESTS", "FAILURES", "");
        foreach (var b in backends.EnumerateArray())
        {
            var weight = b.GetProperty("weight").GetInt32();
            var configured = b.GetProperty("configuredWeight").GetInt32();
            table.Row(
                $"{b.GetProperty("pool").GetString()}/{b.GetProperty("name").GetString()}",
                b.GetProperty("address").GetString(),
                b.GetProperty("health").GetString(),
                b.GetProperty("adminState").GetString(),
                weight == configured ? weight.ToString() : $"{weight} (of {configured}, slow start)",
                b.GetProperty("inFlight").GetInt64(),
                b.GetProperty("requests").GetInt64(),
                b.GetProperty("connectFailures").GetInt64() + b.GetProperty("responseFailures").GetInt64(),
                b.GetProperty("health").GetString() == "down" ? b.GetProperty("healthReason").GetString() : "");
        }
        table.WriteTo(output);
        output.WriteLine(ThisNodesCounts);
    }

    /// <summary>Under every table with traffic counts: each node counts only what it forwarded itself.</summary>
    private const string ThisNodesCounts = "Counts are the asked node's own (each node counts what it accepted and forwarded).";

    public static void Stats(JsonElement backends, TextWriter output)
    {
        var table = new TextTable("BACKEND", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "CONNECT FAIL", "RESPONSE FAIL", "EJECTIONS");
        foreach (var b in backends.EnumerateArray())
        {
            var responses = b.GetProperty("responses");
            table.Row(
                $"{b.GetProperty("pool").GetString()}/{b.GetProperty("name").GetString()}",
                b.GetProperty("requests").GetInt64(),
                responses.GetProperty("2xx").GetInt64(),
                responses.GetProperty("3xx").GetInt64(),
                responses.GetProperty("4xx").GetInt64(),
                responses.GetProperty("5xx").GetInt64(),
                b.GetProperty("connectFailures").GetInt64(),
                b.GetProperty("responseFailures").GetInt64(),
                b.GetProperty("ejections").GetInt64());
        }
        table.WriteTo(output);
        output.WriteLine(ThisNodesCounts);
    }

    public static void Frontends(JsonElement frontends, TextWriter output)
    {
        var table = new TextTable("FRONTEND", "MODE", "POOL", "LISTENING", "ACCEPTED", "OPEN", "TUNNELS", "REFUSED");
        foreach (var f in frontends.EnumerateArray())
        {
            var listening = f.GetProperty("listening").EnumerateArray().Select(e => e.GetString()).ToList();
            table.Row(
                f.GetProperty("name").GetString(),
                f.GetProperty("mode").GetString(),
                f.GetProperty("pool").GetString(),
                listening.Count == 0 ? "closed (" + string.Join(", ", f.GetProperty("bind").EnumerateArray().Select(e => e.GetString())) + ")" : string.Join(", ", listening),
                f.GetProperty("accepted").GetInt64(),
                f.GetProperty("open").GetInt64(),
                f.TryGetProperty("tunnels", out var tunnels) ? tunnels.GetInt64() : 0,
                f.GetProperty("refused").GetInt64());
        }
        table.WriteTo(output);
        output.WriteLine(ThisNodesCounts);
    }

    public static void Affinity(JsonElement affinity, TextWriter output)
    {
        if (affinity.TryGetProperty("key", out _))
        {
            output.WriteLine($"{affinity.GetProperty("key").GetString()} -> {affinity.GetProperty("backend").GetString()} (expires {affinity.GetProperty("expiresAt").GetDateTimeOffset():u})");
            return;
        }
        var table = new TextTable("SESSION", "BACKEND", "EXPIRES", "ESTABLISHED");
        foreach (var entry in affinity.GetProperty("shown").EnumerateArray())
        {
            table.Row(entry.GetProperty("key").GetString(), entry.GetProperty("backend").GetString(), entry.GetProperty("expiresAt").GetDateTimeOffset().ToString("u"),
                entry.TryGetProperty("established", out var established) && established.GetBoolean() ? "yes" : "no");
        }
        table.WriteTo(output);
        output.WriteLine($"{affinity.GetProperty("entries").GetInt32()} sessions in pool {affinity.GetProperty("pool").GetString()} ({affinity.GetProperty("mode").GetString()}, write {affinity.GetProperty("write").GetString()}){(table.Count < affinity.GetProperty("entries").GetInt32() ? $", first {table.Count} shown" : "")}");
    }

    public static void SplitBrainResolver(JsonElement sbr, TextWriter output)
    {
        output.WriteLine($"downing provider:        {sbr.GetProperty("downingProvider").GetString()}");
        output.WriteLine($"strategy:                {sbr.GetProperty("strategy").GetString()}, stable after {sbr.GetProperty("stableAfterSeconds").GetDouble():0.###} s, down-all-when-unstable {sbr.GetProperty("downAllWhenUnstable").GetString()}");
        output.WriteLine($"failure detector:        heartbeat every {sbr.GetProperty("heartbeatIntervalSeconds").GetDouble():0.###} s, acceptable pause {sbr.GetProperty("acceptableHeartbeatPauseSeconds").GetDouble():0.###} s");
        var decisions = sbr.GetProperty("decisions").EnumerateArray().ToList();
        output.WriteLine(decisions.Count == 0 ? "decisions on this node:  none since it started" : "decisions on this node:");
        foreach (var line in decisions)
        {
            output.WriteLine($"  {line.GetProperty("at").GetDateTimeOffset().ToLocalTime():yyyy-MM-dd HH:mm:ss}  {line.GetProperty("message").GetString()}");
        }
    }

    public static void Sharding(JsonElement sharding, TextWriter output)
    {
        var table = new TextTable("MEMBER", "SHARDS", "PROBES", "PROBES PER SHARD");
        foreach (var region in sharding.GetProperty("regions").EnumerateArray())
        {
            table.Row(region.GetProperty("address").GetString(), region.GetProperty("shards").GetInt32().ToString(CultureInfo.InvariantCulture),
                region.GetProperty("probes").GetInt32().ToString(CultureInfo.InvariantCulture),
                string.Join(" ", region.GetProperty("probesPerShard").EnumerateObject().Select(s => $"{s.Name}:{s.Value.GetInt32()}")));
        }
        table.WriteTo(output);
        output.WriteLine($"shard type {sharding.GetProperty("typeName").GetString()}");
    }

    /// <summary>The actor tree, one actor a line, indented by depth under its parent.</summary>
    public static void Actors(JsonElement hierarchy, TextWriter output)
    {
        foreach (var path in hierarchy.GetProperty("actors").EnumerateArray().Select(a => a.GetString()!))
        {
            var depth = path.Count(c => c == '/') - 1;
            output.WriteLine(new string(' ', 2 * depth) + path[(path.LastIndexOf('/') + 1)..]);
        }
        if (hierarchy.GetProperty("truncated").GetBoolean())
        {
            output.WriteLine("(truncated: more actors than shown)");
        }
    }

    public static void Log(JsonElement log, TextWriter output)
    {
        foreach (var line in log.GetProperty("lines").EnumerateArray())
        {
            output.WriteLine($"{line.GetProperty("at").GetDateTimeOffset().ToLocalTime():HH:mm:ss.fff} {line.GetProperty("level").GetString()!.ToUpperInvariant(),-7} {line.GetProperty("source").GetString()}  {line.GetProperty("message").GetString()}");
        }
    }

    /// <summary>`config show`: what every node runs, then this node's pools and frontends.</summary>
    public static void Config(JsonElement config, TextWriter output)
    {
        if (config.TryGetProperty("cluster", out var cluster) && cluster.ValueKind == JsonValueKind.Object)
        {
            output.WriteLine($"cluster configuration: version {cluster.GetProperty("version").GetInt64()}, published through {cluster.GetProperty("publishedBy").GetString()} at {cluster.GetProperty("publishedAt").GetDateTimeOffset():u}");
        }
        else
        {
            output.WriteLine("cluster configuration: none published (every node runs its own files)");
        }
        var table = new TextTable("NODE", "RUNS", "POOLS FINGERPRINT", "");
        foreach (var node in config.GetProperty("nodes").EnumerateArray())
        {
            var version = node.GetProperty("version");
            table.Row(node.GetProperty("node").GetString(),
                version.ValueKind != JsonValueKind.Number ? "-" : version.GetInt64() == 0 ? "its files" : $"version {version.GetInt64()}",
                node.GetProperty("fingerprint").GetString() ?? "-",
                node.GetProperty("drift").GetBoolean() ? "DRIFT: other pools than most members" : "");
        }
        table.WriteTo(output);
        output.WriteLine($"this node: pools {string.Join(", ", config.GetProperty("pools").EnumerateArray().Select(p => p.GetString()))}; frontends {string.Join(", ", config.GetProperty("frontends").EnumerateArray().Select(f => f.GetString()))}");
    }

    /// <summary>`config history`: a version a line, then what it changed.</summary>
    public static void ConfigHistory(JsonElement history, TextWriter output)
    {
        var versions = history.EnumerateArray().ToList();
        if (versions.Count == 0)
        {
            output.WriteLine("no cluster configuration was published");
            return;
        }
        foreach (var version in versions)
        {
            output.WriteLine($"version {version.GetProperty("version").GetInt64()}  {version.GetProperty("publishedAt").GetDateTimeOffset():u}  through {version.GetProperty("publishedBy").GetString()}  pools {version.GetProperty("fingerprint").GetString()}");
            var changes = version.GetProperty("changes").EnumerateArray().Select(c => c.GetString()).ToList();
            foreach (var change in changes.Count == 0 ? ["nothing changed"] : changes)
            {
                output.WriteLine("  " + change);
            }
        }
    }

    /// <summary>`config diff`: the lines that differ, "-" for the cluster's, "+" for the file's, with two lines around each change.</summary>
    public static void Diff(string current, string proposed, TextWriter output)
    {
        var lines = DiffPlex.DiffBuilder.InlineDiffBuilder.Diff(current, proposed, ignoreWhiteSpace: false).Lines;
        if (lines.All(l => l.Type == DiffPlex.DiffBuilder.Model.ChangeType.Unchanged))
        {
            output.WriteLine("no difference: the file is the cluster's configuration");
            return;
        }
        var shown = new bool[lines.Count];
        for (var i = 0; i < lines.Count; i++)
        {
            if (lines[i].Type != DiffPlex.DiffBuilder.Model.ChangeType.Unchanged)
            {
                for (var j = Math.Max(0, i - 2); j <= Math.Min(lines.Count - 1, i + 2); j++)
                {
                    shown[j] = true;
                }
            }
        }
        for (var i = 0; i < lines.Count; i++)
        {
            if (!shown[i])
            {
                if (i > 0 && shown[i - 1])
                {
                    output.WriteLine("  ...");
                }
                continue;
            }
            var prefix = lines[i].Type switch
            {
                DiffPlex.DiffBuilder.Model.ChangeType.Inserted => "+ ",
                DiffPlex.DiffBuilder.Model.ChangeType.Deleted => "- ",
                _ => "  ",
            };
            output.WriteLine(prefix + lines[i].Text);
        }
    }

    /// <summary>`config reload`: the result, then a line per change.</summary>
    public static void Reload(JsonElement reload, TextWriter output)
    {
        output.WriteLine(reload.GetProperty("result").GetString());
        foreach (var change in reload.GetProperty("changes").EnumerateArray())
        {
            output.WriteLine("  " + change.GetString());
        }
    }

    /// <summary>One event of `cluster tail`: raw JSON with --json, colored by severity on a terminal, else a plain line.</summary>
    public static void Event(JsonElement notable, bool json, TextWriter output)
    {
        if (json)
        {
            output.WriteLine(notable.GetRawText());
            return;
        }
        var kind = notable.GetProperty("kind").GetString() ?? "";
        var line = $"{notable.GetProperty("at").GetDateTimeOffset().ToLocalTime():HH:mm:ss.fff}  {kind,-20} {notable.GetProperty("text").GetString()}";
        if (Terminal.For(output) is { } console)
        {
            console.Write(new Spectre.Console.Text(line + Environment.NewLine, new Spectre.Console.Style(Terminal.ColorOfEvent(kind))));
        }
        else
        {
            output.WriteLine(line);
        }
    }
}
