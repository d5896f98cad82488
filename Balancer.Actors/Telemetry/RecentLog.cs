using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;

namespace Balancer.Telemetry;

/// <summary>
/// The node's last <see cref="Capacity"/> log lines at the level the node logs at, kept in memory
/// for <c>ctl log peek</c> and the split-brain resolver's decisions in <c>ctl cluster sbr</c>.
/// Log lines name no secret (tokens, keys and passwords are never logged).
/// </summary>
public sealed class RecentLog
{
    /// <summary>How many lines are kept.</summary>
    public const int Capacity = 1000;

    private readonly ConcurrentQueue<LogLine> _lines = new();

    /// <summary>One log line as kept.</summary>
    public sealed record LogLine(DateTimeOffset At, string Level, string Source, string Message);

    /// <summary>The last <paramref name="count"/> lines, oldest first, that <paramref name="filter"/> keeps.</summary>
    public IReadOnlyList<LogLine> Last(int count, Func<LogLine, bool>? filter = null)
    {
        var lines = _lines.ToArray();
        return (filter is null ? lines : lines.Where(filter).ToArray()).TakeLast(count).ToList();
    }

    internal void Add(LogEvent log, LogLevel level)
    {
        // Subscribed to every log event: what the node does not log is not kept either.
        if (log.LogLevel() < level)
        {
            return;
        }
        _lines.Enqueue(new LogLine(new DateTimeOffset(log.Timestamp, TimeSpan.Zero), log.LogLevel().ToString().Replace("Level", "").ToLowerInvariant(),
            log.LogSource, log.Cause is null ? log.Message?.ToString() ?? "" : $"{log.Message} ({log.Cause.GetType().Name}: {log.Cause.Message})"));
        while (_lines.Count > Capacity)
        {
            _lines.TryDequeue(out _);
        }
    }

    /// <summary>Subscribes to <paramref name="system"/>'s log events.</summary>
    internal static RecentLog Record(ExtendedActorSystem system)
    {
        var log = new RecentLog();
        var recorder = system.SystemActorOf(Props.Create(() => new Recorder(log, system.EventStream)), "balancer-recent-log");
        system.EventStream.Subscribe(recorder, typeof(LogEvent));
        return log;
    }

    private sealed class Recorder : ReceiveActor
    {
        public Recorder(RecentLog log, LoggingBus bus) => Receive<LogEvent>(e => log.Add(e, bus.LogLevel));
    }
}
