using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json;
using Balancer.Configuration;
using Balancer.Node.Ctl;

namespace Balancer.Node.Commands;

/// <summary>
/// <c>balancer ctl</c>: the pbm-style client of a node's admin API. One command per invocation, or
/// an interactive prompt when no command is given. Exit codes: 0 ok, 1 refused or node unreachable,
/// 2 wrong arguments. The same command tree parses the command line and the prompt's lines.
/// </summary>
internal static class CtlCommand
{
    /// <summary>A node's admin API where reference.conf puts it (<c>balancer.node.admin.bind</c>).</summary>
    public static readonly string DefaultTarget = BalancerSettings.DefaultConfig().GetString("balancer.node.admin.bind");

    /// <summary>Read when --token is not given, so the token need not appear in shell history or ps.</summary>
    public const string TokenVariable = "BALANCER_ADMIN_TOKEN";

    /// <summary>The node a command talks to, and how it prints.</summary>
    private sealed record Session(AdminClient Client, bool Json, bool OwnsClient);

    /// <summary>One running command: its arguments, node, output and cancellation.</summary>
    private sealed record Call(ParseResult Parse, AdminClient Client, bool Json, TextWriter Output, CancellationToken Cancellation)
    {
        public T Get<T>(Argument<T> argument) => Parse.GetValue(argument)!;

        /// <summary>Prints the node's answer: as JSON with --json, else for people.</summary>
        public async Task Show(Func<CancellationToken, Task<JsonElement>> call, Action<JsonElement, TextWriter> human)
        {
            var result = await call(Cancellation);
            if (Json)
            {
                Output.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                human(result, Output);
            }
        }

        /// <summary>A change's one-line result.</summary>
        public Task Change(Func<CancellationToken, Task<JsonElement>> call) =>
            Show(call, (result, output) => output.WriteLine(result.GetProperty("result").GetString()));
    }

    public static Command Create()
    {
        var target = new Argument<string?>("HOST:PORT") { Description = $"The node's admin API (default {DefaultTarget}).", Arity = ArgumentArity.ZeroOrOne };
        var token = new Option<string?>("--token") { Description = $"The admin token (default: ${TokenVariable}).", HelpName = "T", Recursive = true };
        var json = new Option<bool>("--json") { Description = "Print the admin API's JSON as it is.", Recursive = true };
        var timeout = CliOptions.WholeNumber("--timeout", "Seconds to wait for the node.", 1, 3600, 10);
        timeout.Recursive = true;
        var ctl = new Command("ctl", "Manage a running cluster through a node's admin API; with no command, an interactive prompt.") { target, token, json, timeout };
        Session Open(ParseResult parse) => new(
            new AdminClient(parse.GetValue(target) ?? DefaultTarget, parse.GetValue(token) ?? Environment.GetEnvironmentVariable(TokenVariable), TimeSpan.FromSeconds(parse.GetValue(timeout))),
            parse.GetValue(json),
            OwnsClient: true);
        AddCommands(ctl, Open);
        ctl.SetAction(async (parse, _) =>
        {
            var session = Open(parse);
            using var client = session.Client;
            return await InteractiveAsync(session, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
        });
        return ctl;
    }

    /// <summary>
    /// A word that is neither a ctl command nor HOST:PORT lands in the optional target: what it is
    /// not, as the first line (System.CommandLine validates a parent's argument only when the parent
    /// itself runs, so this is checked for every ctl command line).
    /// </summary>
    public static string? TargetProblem(ParseResult parse)
    {
        for (SymbolResult? result = parse.CommandResult; result is not null; result = result.Parent)
        {
            if (result is CommandResult { Command: { Name: "ctl" } ctl } && ctl.Arguments[0] is Argument<string?> target
                && parse.GetResult(target) is { Tokens: [var token] } && !LooksLikeTarget(token.Value))
            {
                var word = token.Value;
                if (word.StartsWith('-'))
                {
                    var option = SettingsReader.Nearest(word.TrimStart('-'), ctl.Options.Select(o => o.Name.TrimStart('-')));
                    return $"unknown option {word}{(option is null ? "" : $"; did you mean `--{option}`?")}";
                }
                var nearest = SettingsReader.Nearest(word, ctl.Subcommands.Select(c => c.Name));
                return $"unknown command \"{word}\" (expected HOST:PORT or one of {string.Join(", ", ctl.Subcommands.Select(c => c.Name))}){(nearest is null ? "" : $"; did you mean `{nearest}`?")}";
            }
        }
        return null;
    }

    /// <summary>Every ctl command under <paramref name="parent"/>; <paramref name="open"/> gives each run its node.</summary>
    private static void AddCommands(Command parent, Func<ParseResult, Session> open)
    {
        Command Leaf(string name, string description, Func<Call, Task> body, params Argument[] arguments)
        {
            var command = new Command(name, description);
            foreach (var argument in arguments)
            {
                command.Arguments.Add(argument);
            }
            command.SetAction(async (parse, cancellationToken) =>
            {
                var session = open(parse);
                var error = parse.InvocationConfiguration.Error;
                // Ctrl+C ends a following command (`cluster tail`, `top`) cleanly, with exit 0 and
                // the terminal as it was; the prompt has a handler of its own for its commands.
                using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                ConsoleCancelEventHandler? onCtrlC = session.OwnsClient ? (_, e) => { e.Cancel = true; interrupted.Cancel(); } : null;
                if (onCtrlC is not null)
                {
                    Console.CancelKeyPress += onCtrlC;
                }
                try
                {
                    await body(new Call(parse, session.Client, session.Json, parse.InvocationConfiguration.Output, interrupted.Token));
                    return 0;
                }
                catch (UsageException e)
                {
                    error.WriteLine($"balancer ctl: {e.Message}");
                    return CliOptions.Usage;
                }
                catch (CtlException e)
                {
                    error.WriteLine($"balancer ctl: {e.Message}");
                    return CliOptions.Failed;
                }
                catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
                {
                    return 0;
                }
                finally
                {
                    if (onCtrlC is not null)
                    {
                        Console.CancelKeyPress -= onCtrlC;
                    }
                    if (session.OwnsClient)
                    {
                        session.Client.Dispose();
                    }
                }
            });
            return command;
        }
        Command Group(string name, string description, params Command[] commands)
        {
            var group = new Command(name, description);
            foreach (var command in commands)
            {
                group.Subcommands.Add(command);
            }
            return group;
        }
        Argument<string> Address() => new("ADDRESS") { Description = "A member's address, akka.tcp://balancer@HOST:PORT." };
        Argument<(string Pool, string Backend)> Backend()
        {
            var argument = new Argument<(string Pool, string Backend)>("POOL/BACKEND") { Description = "A backend of a pool, e.g. app/b." };
            argument.CustomParser = result => PoolBackend(result);
            return argument;
        }
        Argument<int> Weight(int arity)
        {
            var argument = new Argument<int>("WEIGHT") { Description = $"A weight {BackendRules.WeightRange}." };
            if (arity == 0)
            {
                argument.Arity = ArgumentArity.ZeroOrOne;
                argument.DefaultValueFactory = _ => -1;
            }
            argument.CustomParser = result =>
            {
                var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
                if (int.TryParse(text, out var weight) && BackendRules.IsValidWeight(weight))
                {
                    return weight;
                }
                result.AddError($"weight must be a whole number {BackendRules.WeightRange}, got \"{text}\"");
                return 0;
            };
            return argument;
        }
        Argument<string> Pool() => new("POOL") { Description = "A pool's name." };
        Argument<string> ConfigFile(string description) => new("FILE") { Description = description };
        Argument<string?> Key() => new("KEY") { Description = "One session: its key, or hash:HEX as listed.", Arity = ArgumentArity.ZeroOrOne };

        var join = Address();
        var leave = Address();
        var down = Address();
        parent.Subcommands.Add(Group("cluster", "Membership: show, leader, join, leave, down, down-unreachable, tail, sbr, sharding.",
            Leaf("show", "Members: address, roles, status, reachability, duty.", c => c.Show(t => c.Client.GetAsync("api/cluster", t), CtlOutput.Cluster)),
            Leaf("leader", "The leader's address.", c => c.Show(t => c.Client.GetAsync("api/cluster", t), (r, o) => o.WriteLine(r.GetProperty("leader").GetString() ?? "(no leader)"))),
            Leaf("join", "Make this node join the cluster at ADDRESS.", c => c.Change(t => c.Client.PostAsync("api/cluster/join", new { address = c.Get(join) }, t)), join),
            Leaf("leave", "A member leaves the cluster gracefully.", c => c.Change(t => c.Client.PostAsync("api/cluster/leave", new { address = c.Get(leave) }, t)), leave),
            Leaf("down", "Mark a member down (a dead node).", c => c.Change(t => c.Client.PostAsync("api/cluster/down", new { address = c.Get(down) }, t)), down),
            Leaf("down-unreachable", "Down every member this node sees unreachable.", c => c.Change(t => c.Client.PostAsync("api/cluster/down-unreachable", null, t))),
            Leaf("tail", "Stream membership and backend events (Ctrl+C stops).", c => c.Client.TailAsync(e => CtlOutput.Event(e, c.Json, c.Output), c.Cancellation)),
            Leaf("sbr", "The split-brain resolver's settings and last decisions.", c => c.Show(t => c.Client.GetAsync("api/cluster/sbr", t), CtlOutput.SplitBrainResolver)),
            Leaf("sharding", "The probe shards and probes on each member.", c => c.Show(t => c.Client.GetAsync("api/cluster/sharding", t), CtlOutput.Sharding))));

        parent.Subcommands.Add(Leaf("pools", "Pools with algorithm, health and traffic.", c => c.Show(t => c.Client.GetAsync("api/pools", t), CtlOutput.Pools)));
        var backendsPool = new Argument<string?>("POOL") { Description = "Only this pool's backends.", Arity = ArgumentArity.ZeroOrOne };
        parent.Subcommands.Add(Leaf("backends", "Backends with health, admin state, weight and traffic.",
            c => c.Show(async t => JsonSerializer.SerializeToElement(await c.Client.BackendsAsync(c.Parse.GetValue(backendsPool), t)), CtlOutput.Backends), backendsPool));

        Command State(string state, string description)
        {
            var backend = Backend();
            return Leaf(state, description, c => c.Change(t => c.Client.PostAsync($"api/pools/{c.Get(backend).Pool}/backends/{c.Get(backend).Backend}/state", new { state }, t)), backend);
        }
        var weighted = Backend();
        var weight = Weight(1);
        var addPool = Pool();
        var addName = new Argument<string>("NAME") { Description = "The new backend's name." };
        var addAddress = new Argument<string>("HOST:PORT") { Description = "Where it listens." };
        var addWeight = Weight(0);
        var removed = Backend();
        parent.Subcommands.Add(Group("backend", "Change a backend on every node: ready, drain, maint, weight, add, remove.",
            State("ready", "Take new connections and sessions."),
            State("drain", "Keep existing sessions, take no new ones."),
            State("maint", "Out of rotation: sessions move."),
            Leaf("weight", $"Set a backend's weight ({BackendRules.WeightRange}).",
                c => c.Change(t => c.Client.PostAsync($"api/pools/{c.Get(weighted).Pool}/backends/{c.Get(weighted).Backend}/weight", new { weight = c.Get(weight) }, t)), weighted, weight),
            // No weight given: the pool's backend-defaults.weight, decided by the node.
            Leaf("add", "Add a backend to a pool.",
                c => c.Change(t => c.Client.PostAsync($"api/pools/{Uri.EscapeDataString(c.Get(addPool))}/backends/{Uri.EscapeDataString(c.Get(addName))}",
                    new { address = c.Get(addAddress), weight = c.Get(addWeight) is >= 0 and var w ? w : (int?)null }, t)), addPool, addName, addAddress, addWeight),
            Leaf("remove", "Remove a backend.", c => c.Change(t => c.Client.DeleteAsync($"api/pools/{c.Get(removed).Pool}/backends/{c.Get(removed).Backend}", t)), removed)));

        var showPool = Pool();
        var showKey = Key();
        var clearPool = Pool();
        var clearKey = Key();
        static string KeyPath(string? key) => key is null ? "" : "/" + Uri.EscapeDataString(key);
        parent.Subcommands.Add(Group("affinity", "Sessions of a pool: show, clear.",
            Leaf("show", "Sessions of a pool, by hash (or one session).",
                c => c.Show(t => c.Client.GetAsync($"api/pools/{Uri.EscapeDataString(c.Get(showPool))}/affinity{KeyPath(c.Parse.GetValue(showKey))}", t), CtlOutput.Affinity), showPool, showKey),
            Leaf("clear", "Forget every session of a pool (or one) on every node.",
                c => c.Change(t => c.Client.DeleteAsync($"api/pools/{Uri.EscapeDataString(c.Get(clearPool))}/affinity{KeyPath(c.Parse.GetValue(clearKey))}", t)), clearPool, clearKey)));

        parent.Subcommands.Add(Leaf("frontends", "Frontends, their addresses and traffic.", c => c.Show(t => c.Client.GetAsync("api/frontends", t), CtlOutput.Frontends)));
        parent.Subcommands.Add(Leaf("stats", "Responses, failures and retries per backend.", c => c.Show(async t => JsonSerializer.SerializeToElement(await c.Client.BackendsAsync(null, t)), CtlOutput.Stats)));
        parent.Subcommands.Add(Leaf("top", "A live view of every backend's traffic, refreshed every second; keys drain or ready the selected one.",
            c => TopView.RunAsync(c.Client, c.Output, c.Cancellation)));
        parent.Subcommands.Add(Group("actor", "The node's actors.",
            Leaf("hierarchy", "The node's actors under /user and /system.", c => c.Show(t => c.Client.GetAsync("api/actors", t), CtlOutput.Actors))));

        var applyFile = ConfigFile("The HOCON to publish: pools, frontends and their defaults.");
        var diffFile = ConfigFile("The HOCON to compare with the cluster's configuration.");
        parent.Subcommands.Add(Group("config", "Configuration: show, diff, apply, history, reload.",
            Leaf("show", "What every node runs (cluster configuration version, pools fingerprint, drift), and the node's pools and frontends.",
                c => c.Show(t => c.Client.GetAsync("api/config", t), CtlOutput.Config)),
            Leaf("diff", "How FILE differs from the cluster's configuration (- now, + FILE).",
                async c =>
                {
                    var text = ReadConfigFile(c.Get(diffFile));
                    var config = await c.Client.GetAsync("api/config", c.Cancellation);
                    var current = config.TryGetProperty("cluster", out var cluster) && cluster.ValueKind == JsonValueKind.Object ? cluster.GetProperty("text").GetString() ?? "" : "";
                    CtlOutput.Diff(current, text, c.Output);
                }, diffFile),
            Leaf("apply", "Publish FILE as the cluster's configuration: checked on the node first (refused whole when anything is wrong), then applied by every node over its own files.",
                c => c.Show(t => c.Client.PostAsync("api/config", new { text = ReadConfigFile(c.Get(applyFile)) }, t), CtlOutput.Reload), applyFile),
            Leaf("history", "The versions of the cluster's configuration, newest first, with what each changed.",
                c => c.Show(t => c.Client.GetAsync("api/config/history", t), CtlOutput.ConfigHistory)),
            Leaf("reload", "Read the node's configuration files again and apply them (as SIGHUP does); refused whole when anything is wrong.",
                c => c.Show(t => c.Client.PostAsync("api/config/reload", null, t), CtlOutput.Reload))));

        var lines = CliOptions.WholeNumberArgument("N", "How many lines (1-1000).", 1, 1000, 50);
        var level = new Argument<string?>("LEVEL") { Description = "The level to set.", Arity = ArgumentArity.ZeroOrOne };
        level.AcceptOnlyFromAmong("debug", "info", "warning", "error");
        parent.Subcommands.Add(Group("log", "The node's log: peek, level.",
            Leaf("peek", "The node's last N log lines.", c => c.Show(t => c.Client.GetAsync($"api/log?lines={c.Get(lines)}", t), CtlOutput.Log), lines),
            Leaf("level", "The node's log level, or set it.", c => c.Parse.GetValue(level) is { } wanted
                ? c.Change(t => c.Client.PostAsync("api/log/level", new { level = wanted }, t))
                : c.Show(t => c.Client.GetAsync("api/log?lines=1", t), (l, o) => o.WriteLine(l.GetProperty("level").GetString())), level)));
    }

    /// <summary>A configuration file's text, or the one line saying why it cannot be read.</summary>
    private static string ReadConfigFile(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CtlException($"{path}: {(e is FileNotFoundException or DirectoryNotFoundException ? "no such file" : e.Message)}");
        }
    }

    /// <summary>Every command of the tree under <paramref name="parent"/> with its arguments and description, one per line: the prompt's `help`.</summary>
    public static string Palette(Command parent)
    {
        var rows = new List<(string Usage, string Description)>();
        void Walk(Command command, string path)
        {
            if (command.Subcommands.Count == 0)
            {
                var arguments = command.Arguments.Select(a => a.Arity.MinimumNumberOfValues == 0 ? $"[{a.Name}]" : a.Name);
                rows.Add((string.Join(' ', new[] { path }.Concat(arguments)), command.Description ?? ""));
                return;
            }
            foreach (var sub in command.Subcommands.Where(s => !s.Hidden))
            {
                Walk(sub, path.Length == 0 ? sub.Name : $"{path} {sub.Name}");
            }
        }
        Walk(parent, "");
        var width = rows.Max(r => r.Usage.Length) + 3;
        return string.Join(Environment.NewLine, rows.Select(r => r.Usage.PadRight(width) + r.Description));
    }

    /// <summary>"app/b" as the escaped pool and backend of a path.</summary>
    private static (string Pool, string Backend) PoolBackend(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        var slash = text.IndexOf('/');
        if (slash <= 0 || slash == text.Length - 1 || text.IndexOf('/', slash + 1) >= 0)
        {
            result.AddError($"expected POOL/BACKEND (e.g. app/b), got \"{text}\"");
            return ("", "");
        }
        return (Uri.EscapeDataString(text[..slash]), Uri.EscapeDataString(text[(slash + 1)..]));
    }

    private static bool LooksLikeTarget(string word)
    {
        var colon = word.LastIndexOf(':');
        return colon > 0 && int.TryParse(word[(colon + 1)..], out var port) && port is > 0 and < 65536;
    }

    /// <summary>The pbm-like prompt: one command per line, `help`, `history`, `exit`; Ctrl+C stops a running `cluster tail` or `top`.</summary>
    private static async Task<int> InteractiveAsync(Session session, TextWriter output, TextWriter error)
    {
        var prompt = new RootCommand($"balancer ctl connected to {session.Client.Target}");
        AddCommands(prompt, _ => session with { OwnsClient = false });
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
        output.WriteLine($"balancer ctl connected to {session.Client.Target}; `help` lists commands, `exit` leaves");
        CancellationTokenSource? running = null;
        Console.CancelKeyPress += (_, e) =>
        {
            if (Volatile.Read(ref running) is { } current)
            {
                e.Cancel = true;
                try
                {
                    current.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The command ended as Ctrl+C came.
                }
            }
        };
        while (true)
        {
            output.Write($"[{session.Client.Target}] balancer> ");
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
            if (line == "help")
            {
                output.WriteLine(Palette(prompt));
                continue;
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
            var parse = prompt.Parse(line, CliOptions.Parsing);
            if (parse.Errors.Count > 0)
            {
                CliOptions.ReportParseErrors(parse, error, "balancer ctl", inPrompt: true);
                continue;
            }
            using var command = new CancellationTokenSource();
            Volatile.Write(ref running, command);
            await parse.InvokeAsync(CliOptions.Invocation(output, error), command.Token);
            Interlocked.Exchange(ref running, null);
        }
    }
}
