using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Balancer.Model;

namespace Balancer.Node.Ctl;

/// <summary>
/// <c>ctl top</c>: every backend's traffic as the asked node forwards it (requests and failures a
/// second, p50/p99 latency over the last second, in flight), its health and admin state, and the
/// members with their duty, refreshed every second. On a terminal it is a live Spectre.Console view
/// whose keys drain, ready or maint the selected backend; to a pipe it prints a plain table a second.
/// </summary>
internal static class TopView
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    /// <summary>One reading of the node: when, its members, and its backends (pool/name → JSON).</summary>
    private sealed record Reading(long At, JsonElement Cluster, IReadOnlyList<JsonElement> Backends);

    public static async Task RunAsync(AdminClient client, TextWriter output, CancellationToken cancellationToken)
    {
        if (Terminal.For(output) is { } console && !Console.IsInputRedirected)
        {
            await LiveAsync(client, console, cancellationToken);
            return;
        }
        Reading? last = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            var now = await ReadAsync(client, cancellationToken);
            output.WriteLine($"{DateTime.Now:HH:mm:ss}  {Members(now.Cluster)}");
            Backends(last, now, selected: -1).WriteTo(output);
            output.WriteLine();
            output.Flush();
            last = now;
            await Task.Delay(Period, cancellationToken).ContinueWith(_ => { });
        }
    }

    private static async Task LiveAsync(AdminClient client, IAnsiConsole console, CancellationToken cancellationToken)
    {
        Reading? last = null;
        Reading? now = null;
        var selected = 0;
        var status = "keys: ↑/↓ select   d drain   r ready   m maint   q quit";
        var nextReading = Stopwatch.GetTimestamp();
        await console.Live(new Text("reading the node...")).AutoClear(false).StartAsync(async live =>
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var changed = false;
                if (Stopwatch.GetTimestamp() >= nextReading)
                {
                    try
                    {
                        (last, now) = (now, await ReadAsync(client, cancellationToken));
                    }
                    catch (CtlException e)
                    {
                        status = $"[red]{Markup.Escape(e.Message)}[/]";
                    }
                    nextReading = Stopwatch.GetTimestamp() + (long)(Period.TotalSeconds * Stopwatch.Frequency);
                    changed = true;
                }
                while (Console.KeyAvailable)
                {
                    var key = Console.ReadKey(intercept: true);
                    var count = now?.Backends.Count ?? 0;
                    switch (key.Key)
                    {
                        case ConsoleKey.Q or ConsoleKey.Escape:
                            return;
                        case ConsoleKey.UpArrow or ConsoleKey.K when count > 0:
                            selected = (selected + count - 1) % count;
                            break;
                        case ConsoleKey.DownArrow or ConsoleKey.J when count > 0:
                            selected = (selected + 1) % count;
                            break;
                        case ConsoleKey.D or ConsoleKey.R or ConsoleKey.M when count > 0:
                            var state = key.Key switch { ConsoleKey.D => "drain", ConsoleKey.R => "ready", _ => "maint" };
                            var backend = now!.Backends[Math.Min(selected, count - 1)];
                            var pool = backend.GetProperty("pool").GetString()!;
                            var name = backend.GetProperty("name").GetString()!;
                            try
                            {
                                var result = await client.PostAsync($"api/pools/{Uri.EscapeDataString(pool)}/backends/{Uri.EscapeDataString(name)}/state", new { state }, cancellationToken);
                                status = Markup.Escape(result.GetProperty("result").GetString() ?? "");
                            }
                            catch (CtlException e)
                            {
                                status = $"[red]{Markup.Escape(e.Message)}[/]";
                            }
                            nextReading = Stopwatch.GetTimestamp();
                            break;
                    }
                    changed = true;
                }
                if (changed)
                {
                    var header = new Markup($"[bold]balancer top[/]  {Markup.Escape(client.Target)}  {DateTime.Now:HH:mm:ss}  (traffic this node forwarded)");
                    // Until a first reading, the header and why there is none yet (an unreachable node, a refused token).
                    live.UpdateTarget(now is null
                        ? new Rows(header, new Markup(status))
                        : new Rows(header, CtlOutput.MembersTable(now.Cluster).ToSpectre(), Backends(last, now, Math.Min(selected, Math.Max(0, now.Backends.Count - 1))).ToSpectre(), new Markup(status)));
                    live.Refresh();
                }
                await Task.Delay(50, cancellationToken).ContinueWith(_ => { });
            }
        });
    }

    private static async Task<Reading> ReadAsync(AdminClient client, CancellationToken cancellationToken) =>
        new(Stopwatch.GetTimestamp(), await client.GetAsync("api/cluster", cancellationToken), await client.BackendsAsync(null, cancellationToken));

    /// <summary>The backends' rates between two readings (none yet on the first).</summary>
    private static TextTable Backends(Reading? last, Reading now, int selected)
    {
        var table = new TextTable("", "BACKEND", "HEALTH", "STATE", "REQ/S", "FAIL/S", "5XX/S", "P50 MS", "P99 MS", "IN FLIGHT");
        var seconds = last is null ? 0 : Stopwatch.GetElapsedTime(last.At, now.At).TotalSeconds;
        var before = last?.Backends.ToDictionary(Key) ?? new Dictionary<string, JsonElement>();
        for (var i = 0; i < now.Backends.Count; i++)
        {
            var b = now.Backends[i];
            string? Rate(Func<JsonElement, long> count) =>
                seconds > 0 && before.TryGetValue(Key(b), out var then) ? (Math.Max(0, count(b) - count(then)) / seconds).ToString("0.#", CultureInfo.InvariantCulture) : null;
            string? Latency(double quantile) =>
                before.TryGetValue(Key(b), out var then) && BackendCounters.Quantile(quantile, Histogram(then), Histogram(b)) is { } value
                    ? (value * 1000).ToString("0.#", CultureInfo.InvariantCulture)
                    : null;
            table.Row(
                i == selected ? ">" : "",
                Key(b),
                b.GetProperty("health").GetString(),
                b.GetProperty("adminState").GetString(),
                Rate(x => x.GetProperty("requests").GetInt64()),
                Rate(x => x.GetProperty("connectFailures").GetInt64() + x.GetProperty("responseFailures").GetInt64()),
                Rate(x => x.GetProperty("responses").GetProperty("5xx").GetInt64()),
                Latency(0.5),
                Latency(0.99),
                b.GetProperty("inFlight").GetInt64());
        }
        return table;
    }

    private static string Key(JsonElement backend) => $"{backend.GetProperty("pool").GetString()}/{backend.GetProperty("name").GetString()}";

    private static long[] Histogram(JsonElement backend) => backend.GetProperty("latencyHistogram").EnumerateArray().Select(c => c.GetInt64()).ToArray();

    /// <summary>"3 members: ..." on one line, for the plain view.</summary>
    private static string Members(JsonElement cluster)
    {
        var members = cluster.GetProperty("members").EnumerateArray().ToList();
        return $"{members.Count} members: " + string.Join("; ", members.Select(m =>
            $"{m.GetProperty("address").GetString()} {m.GetProperty("status").GetString()} {m.GetProperty("duty").GetString()}{(m.GetProperty("reachable").GetBoolean() ? "" : " UNREACHABLE")}"));
    }
}
