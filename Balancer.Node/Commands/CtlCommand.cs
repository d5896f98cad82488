using System.Text.Json;
using Balancer.Configuration;
using Balancer.Node.Ctl;

namespace Balancer.Node.Commands;

/// <summary>
/// <c>balancer ctl</c>: the pbm-style client of a node's admin API. One command per invocation, or
/// an interactive prompt when no command is given. Exit codes: 0 ok, 1 refused or node unreachable,
/// 2 wrong arguments.
/// </summary>
internal static class CtlCommand
{
    /// <summary>A node's admin API where reference.conf puts it (<c>balancer.node.admin.bind</c>).</summary>
    public static readonly string DefaultTarget = BalancerSettings.DefaultConfig().GetString("balancer.node.admin.bind");

    /// <summary>Read when --token is not given, so the token need not appear in shell history or ps.</summary>
    public const string TokenVariable = "BALANCER_ADMIN_TOKEN";

    public static readonly string Usage = $"balancer ctl [HOST:PORT] [--token T] [--json] [COMMAND]   (default {DefaultTarget}; no COMMAND: interactive)";

    public static readonly string Palette = $"""
        cluster show                           members: address | roles | status | reachability | role
        cluster leader                         the leader's address
        cluster join ADDRESS                   make this node join the cluster at ADDRESS
        cluster leave ADDRESS                  a member leaves the cluster gracefully
        cluster down ADDRESS                   mark a member down (a dead node)
        cluster down-unreachable               down every member this node sees unreachable
        cluster tail                           stream membership and backend events (Ctrl+C stops)
        cluster sbr                            the split-brain resolver's settings and last decisions
        cluster sharding                       the probe shards and probes on each member
        pools                                  pools with algorithm, health and traffic
        backends [POOL]                        backends with health, admin state, weight and traffic
        backend ready|drain|maint POOL/BACKEND set a backend's admin state on every node
        backend weight POOL/BACKEND N          set a backend's weight ({BackendRules.WeightRange}) on every node
        backend add POOL NAME HOST:PORT [W]    add a backend on every node
        backend remove POOL/BACKEND            remove a backend on every node
        affinity show POOL [KEY]               sessions of a pool, by hash (or one session: its key or hash:HEX)
        affinity clear POOL [KEY]              forget every session of a pool (or one: its key or hash:HEX)
        frontends                              frontends, their addresses and traffic
        stats                                  responses, failures and retries per backend
        actor hierarchy                        the node's actors under /user and /system
        log peek [N]                           the node's last N log lines (50)
        log level [debug|info|warning|error]   the node's log level, or set it
        """;

    public static async Task<int> RunAsync(CommandLine args, TextWriter output, TextWriter error)
    {
        var token = args.One("token") ?? Environment.GetEnvironmentVariable(TokenVariable);
        var json = args.Flag("json");
        var timeout = args.Int("timeout", 10, 1, 3600);
        args.RejectUnknown();
        var words = args.Positional.ToList();
        var target = DefaultTarget;
        if (words.Count > 0 && LooksLikeTarget(words[0]))
        {
            target = words[0];
            words.RemoveAt(0);
        }
        using var client = new AdminClient(target, token, TimeSpan.FromSeconds(timeout));
        if (words.Count == 0)
        {
            return await InteractiveAsync(client, json, output, error);
        }
        return await RunOneAsync(client, words, json, output, error);
    }

    /// <summary>Runs one command; prints its result or a one-line reason.</summary>
    public static async Task<int> RunOneAsync(AdminClient client, IReadOnlyList<string> words, bool json, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        try
        {
            await ExecuteAsync(client, words, json, output, cancellationToken);
            return 0;
        }
        catch (UsageException e)
        {
            error.WriteLine($"balancer ctl: {e.Message}");
            error.WriteLine($"usage: {Usage}; commands: `balancer ctl {client.Target} help`");
            return 2;
        }
        catch (CtlException e)
        {
            error.WriteLine($"balancer ctl: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
    }

    private static async Task ExecuteAsync(AdminClient client, IReadOnlyList<string> w, bool json, TextWriter output, CancellationToken cancellationToken)
    {
        string Arg(int index, string what) => index < w.Count ? w[index] : throw new UsageException($"`{string.Join(' ', w.Take(index))}` needs {what}");
        void NoMore(int count)
        {
            if (w.Count > count)
            {
                throw new UsageException($"unexpected argument \"{w[count]}\" after `{string.Join(' ', w.Take(count))}`");
            }
        }
        async Task Print(Task<JsonElement> call, Action<JsonElement> human)
        {
            var result = await call;
            if (json)
            {
                output.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                human(result);
            }
        }
        void Done(JsonElement result) => output.WriteLine(result.GetProperty("result").GetString());

        switch (w[0])
        {
            case "help":
                output.WriteLine(Palette);
                return;
            case "cluster":
                switch (Arg(1, "show, leader, join, leave, down, down-unreachable, tail, sbr or sharding"))
                {
                    case "sbr":
                        NoMore(2);
                        await Print(client.GetAsync("api/cluster/sbr", cancellationToken), r => CtlOutput.SplitBrainResolver(r, output));
                        return;
                    case "sharding":
                        NoMore(2);
                        await Print(client.GetAsync("api/cluster/sharding", cancellationToken), r => CtlOutput.Sharding(r, output));
                        return;
                    case "show":
                        NoMore(2);
                        await Print(client.GetAsync("api/cluster", cancellationToken), c => CtlOutput.Cluster(c, output));
                        return;
                    case "leader":
                        NoMore(2);
                        await Print(client.GetAsync("api/cluster", cancellationToken), c => output.WriteLine(c.GetProperty("leader").GetString() ?? "(no leader)"));
                        return;
                    case "join" or "leave" or "down":
                        var address = Arg(2, "a member ADDRESS (akka.tcp://balancer@HOST:PORT)");
                        NoMore(3);
                        await Print(client.PostAsync($"api/cluster/{w[1]}", new { address }, cancellationToken), Done);
                        return;
                    case "down-unreachable":
                        NoMore(2);
                        await Print(client.PostAsync("api/cluster/down-unreachable", null, cancellationToken), Done);
                        return;
                    case "tail":
                        NoMore(2);
                        await client.TailAsync(e => output.WriteLine(json ? e.GetRawText() : CtlOutput.Event(e)), cancellationToken);
                        return;
                    default:
                        throw new UsageException($"unknown cluster command \"{w[1]}\" (show, leader, join, leave, down, down-unreachable, tail, sbr, sharding)");
                }
            case "pools":
                NoMore(1);
                await Print(client.GetAsync("api/pools", cancellationToken), p => CtlOutput.Pools(p, output));
                return;
            case "backends":
                NoMore(2);
                await Print(BackendsAsync(client, w.Count > 1 ? w[1] : null, cancellationToken), b => CtlOutput.Backends(b, output));
                return;
            case "backend":
                var verb = Arg(1, "ready, drain, maint, weight, add or remove");
                switch (verb)
                {
                    case "ready" or "drain" or "maint":
                    {
                        var (pool, backend) = PoolBackend(Arg(2, "POOL/BACKEND"));
                        NoMore(3);
                        await Print(client.PostAsync($"api/pools/{pool}/backends/{backend}/state", new { state = verb }, cancellationToken), Done);
                        return;
                    }
                    case "weight":
                    {
                        var (pool, backend) = PoolBackend(Arg(2, "POOL/BACKEND"));
                        var text = Arg(3, $"a weight {BackendRules.WeightRange}");
                        NoMore(4);
                        var weight = Weight(text);
                        await Print(client.PostAsync($"api/pools/{pool}/backends/{backend}/weight", new { weight }, cancellationToken), Done);
                        return;
                    }
                    case "add":
                    {
                        var pool = Uri.EscapeDataString(Arg(2, "POOL"));
                        var name = Uri.EscapeDataString(Arg(3, "a backend NAME"));
                        var address = Arg(4, "HOST:PORT");
                        // No weight given: the pool's backend-defaults.weight, decided by the node.
                        int? weight = w.Count > 5 ? Weight(w[5]) : null;
                        NoMore(6);
                        await Print(client.PostAsync($"api/pools/{pool}/backends/{name}", new { address, weight }, cancellationToken), Done);
                        return;
                    }
                    case "remove":
                    {
                        var (pool, backend) = PoolBackend(Arg(2, "POOL/BACKEND"));
                        NoMore(3);
                        await Print(client.DeleteAsync($"api/pools/{pool}/backends/{backend}", cancellationToken), Done);
                        return;
                    }
                    default:
                        throw new UsageException($"unknown backend command \"{verb}\" (ready, drain, maint, weight, add, remove)");
                }
            case "affinity":
                var action = Arg(1, "show or clear");
                var affinityPool = Uri.EscapeDataString(Arg(2, "POOL"));
                NoMore(4);
                var key = w.Count > 3 ? "/" + Uri.EscapeDataString(w[3]) : "";
                switch (action)
                {
                    case "show":
                        await Print(client.GetAsync($"api/pools/{affinityPool}/affinity{key}", cancellationToken), a => CtlOutput.Affinity(a, output));
                        return;
                    case "clear":
                        await Print(client.DeleteAsync($"api/pools/{affinityPool}/affinity{key}", cancellationToken), Done);
                        return;
                    default:
                        throw new UsageException($"unknown affinity command \"{action}\" (show, clear)");
                }
            case "frontends":
                NoMore(1);
                await Print(client.GetAsync("api/frontends", cancellationToken), f => CtlOutput.Frontends(f, output));
                return;
            case "stats":
                NoMore(1);
                await Print(BackendsAsync(client, null, cancellationToken), b => CtlOutput.Stats(b, output));
                return;
            case "actor":
                if (Arg(1, "hierarchy") != "hierarchy")
                {
                    throw new UsageException($"unknown actor command \"{w[1]}\" (hierarchy)");
                }
                NoMore(2);
                await Print(client.GetAsync("api/actors", cancellationToken), a => CtlOutput.Actors(a, output));
                return;
            case "log":
                switch (Arg(1, "peek or level"))
                {
                    case "peek":
                    {
                        var lines = w.Count > 2 ? LineCount(w[2]) : 50;
                        NoMore(3);
                        await Print(client.GetAsync($"api/log?lines={lines}", cancellationToken), l => CtlOutput.Log(l, output));
                        return;
                    }
                    case "level" when w.Count == 2:
                        await Print(client.GetAsync("api/log?lines=1", cancellationToken), l => output.WriteLine(l.GetProperty("level").GetString()));
                        return;
                    case "level":
                    {
                        var level = w[2];
                        NoMore(3);
                        await Print(client.PostAsync("api/log/level", new { level }, cancellationToken), Done);
                        return;
                    }
                    default:
                        throw new UsageException($"unknown log command \"{w[1]}\" (peek, level)");
                }
            default:
                throw new UsageException($"unknown command \"{w[0]}\" (cluster, pools, backends, backend, affinity, frontends, stats, actor, log, help)");
        }
    }

    /// <summary>The backends of <paramref name="pool"/>, or of every pool, as one JSON array.</summary>
    private static async Task<JsonElement> BackendsAsync(AdminClient client, string? pool, CancellationToken cancellationToken)
    {
        var pools = pool is not null
            ? [pool]
            : (await client.GetAsync("api/pools", cancellationToken)).EnumerateArray().Select(p => p.GetProperty("name").GetString()!).ToList();
        var all = new List<JsonElement>();
        foreach (var name in pools)
        {
            all.AddRange((await client.GetAsync($"api/pools/{Uri.EscapeDataString(name)}/backends", cancellationToken)).EnumerateArray());
        }
        return JsonSerializer.SerializeToElement(all);
    }

    private static int LineCount(string text) =>
        int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count) && count is >= 1 and <= 1000
            ? count
            : throw new UsageException($"log peek: expected a number of lines from 1 to 1000, got \"{text}\"");

    private static int Weight(string text) =>
        int.TryParse(text, out var weight) && BackendRules.IsValidWeight(weight)
            ? weight
            : throw new UsageException($"weight must be a whole number {BackendRules.WeightRange}, got \"{text}\"");

    private static (string Pool, string Backend) PoolBackend(string text)
    {
        var slash = text.IndexOf('/');
        if (slash <= 0 || slash == text.Length - 1 || text.IndexOf('/', slash + 1) >= 0)
        {
            throw new UsageException($"expected POOL/BACKEND (e.g. app/b), got \"{text}\"");
        }
        return (Uri.EscapeDataString(text[..slash]), Uri.EscapeDataString(text[(slash + 1)..]));
    }

    private static bool LooksLikeTarget(string word)
    {
        var colon = word.LastIndexOf(':');
        return colon > 0 && int.TryParse(word[(colon + 1)..], out var port) && port is > 0 and < 65536;
    }

    /// <summary>The pbm-like prompt: one command per line, `help`, `history`, `exit`; Ctrl+C stops a running `cluster tail`.</summary>
    private static async Task<int> InteractiveAsync(AdminClient client, bool json, TextWriter output, TextWriter error)
    {
        var history = new List<string>();
        var historyFile = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".balancer_history");
        try
        {
            if (File.Exists(historyFile))
            {
                history.AddRange(File.ReadLines(historyFile).TakeLast(500));
            }
        }
        catch (IOException)
        {
        }
        output.WriteLine($"balancer ctl connected to {client.Target}; `help` lists commands, `exit` leaves");
        CancellationTokenSource? running = null;
        Console.CancelKeyPress += (_, e) =>
        {
            if (running is { } current)
            {
                e.Cancel = true;
                current.Cancel();
            }
        };
        while (true)
        {
            output.Write($"[{client.Target}] balancer> ");
            var line = Console.In.ReadLine();
            if (line is null)
            {
                output.WriteLine();
                return 0;
            }
            line = line.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            if (line is "exit" or "quit")
            {
                return 0;
            }
            if (line == "history")
            {
                for (var i = 0; i < history.Count; i++)
                {
                    output.WriteLine($"{i + 1,4}  {history[i]}");
                }
                continue;
            }
            if (line.StartsWith('!') && int.TryParse(line[1..], out var recall) && recall >= 1 && recall <= history.Count)
            {
                line = history[recall - 1];
                output.WriteLine(line);
            }
            history.Add(line);
            try
            {
                File.AppendAllLines(historyFile, [line]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
            running = new CancellationTokenSource();
            await RunOneAsync(client, line.Split(' ', StringSplitOptions.RemoveEmptyEntries), json, output, error, running.Token);
            running.Dispose();
            running = null;
        }
    }
}
