using Akka.Configuration;

namespace Balancer.Node;

/// <summary>
/// A file beside the node's durable folder (<c>DIR.running</c>), touched every second while
/// <c>balancer run</c> runs and removed when it stops: found at start, it says the last run ended
/// without leaving its cluster (a crash, <c>kill -9</c>), and about when.
/// <para>
/// A node started again within seconds of a crash, at the same address, can associate with the
/// survivors while they still count its previous incarnation as a member; now and then they then
/// lose what they send it (join acknowledgements, heartbeats) until both are downed again, and a
/// restarted first seed formed a cluster of its own. Waiting until the survivors must have removed
/// the previous incarnation (<see cref="RemovalWindow"/> after its last sign of life) avoids that.
/// </para>
/// </summary>
internal sealed class RunMarker : IDisposable
{
    private readonly string _path;
    private readonly Timer _touch;

    private RunMarker(string path)
    {
        _path = path;
        File.WriteAllText(path, Environment.ProcessId.ToString());
        _touch = new Timer(_ => Touch(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>
    /// How long after a crash the survivors take to remove the node: failure detection (the
    /// acceptable heartbeat pause and two heartbeat intervals), the split-brain resolver's
    /// stable-after, and 2 s for the removal itself.
    /// </summary>
    public static TimeSpan RemovalWindow(Config config) =>
        (config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause", TimeSpan.FromSeconds(3))
         + 2 * config.GetTimeSpan("akka.cluster.failure-detector.heartbeat-interval", TimeSpan.FromSeconds(1))
         + config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after", TimeSpan.FromSeconds(20))
         + TimeSpan.FromSeconds(2));

    /// <summary>The marker's path for this node, or null when it keeps nothing on disk (no data-dir).</summary>
    public static string? PathFor(Config config) =>
        NodeConfig.DurableDirectory(config) is { } durable ? durable.TrimEnd('/', '\\') + ".running" : null;

    /// <summary>When the last run that ended without stopping was last alive, or null after a clean stop (or a first start).</summary>
    public static DateTime? LastRunCrashedAt(string path) => File.Exists(path) ? File.GetLastWriteTimeUtc(path) : null;

    /// <summary>Starts marking this run.</summary>
    public static RunMarker Start(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return new RunMarker(path);
    }

    private void Touch()
    {
        try
        {
            File.SetLastWriteTimeUtc(_path, DateTime.UtcNow);
        }
        catch (IOException)
        {
            // A full or read-only disk: the next start may wait less than it should, nothing worse.
        }
    }

    /// <summary>The run ends cleanly: the next start need not wait.</summary>
    public void Dispose()
    {
        _touch.Dispose();
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
        }
    }
}
