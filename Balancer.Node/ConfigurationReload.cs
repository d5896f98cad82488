using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Balancer.Configuration;

namespace Balancer.Node;

/// <summary>
/// Reloads a running node's configuration from its files: on SIGHUP, and when one of the files it
/// read (included ones too) changes. Each reload is validated whole; a configuration with mistakes
/// is refused and the running one stays. Serves every incarnation of the node in turn.
/// </summary>
internal sealed class ConfigurationReload : IDisposable
{
    /// <summary>How long file events settle before the files are read: editors write in several steps.</summary>
    internal static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(300);

    private readonly IReadOnlyList<string> _files;
    private readonly IReadOnlyList<string> _sets;
    private readonly TextWriter _error;
    private readonly PosixSignalRegistration _sighup;
    private readonly List<FileSystemWatcher> _watchers = new();
    private readonly Lock _gate = new();
    // One reload at a time, so that an older reading is never applied after a newer one.
    private readonly SemaphoreSlim _reloading = new(1, 1);
    private readonly bool _watch;
    private readonly Timer _settle;
    private BalancerExtension? _balancer;
    private string _contents;
    private int _pending;

    public ConfigurationReload(IReadOnlyList<string> files, IReadOnlyList<string> sets, bool watch, TextWriter error)
    {
        _files = files;
        _sets = sets;
        _error = error;
        _watch = watch;
        _contents = Contents();
        _settle = new Timer(_ => Reload("file change", onlyWhenChanged: true));
        _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            _ = Task.Run(() => Reload("SIGHUP", onlyWhenChanged: false));
        });
        if (watch)
        {
            Watch();
        }
        if (HangUpIgnored())
        {
            Report("started with SIGHUP ignored (under nohup?): SIGHUP will not reload the configuration; the file watch and `ctl config reload` do");
        }
    }

    /// <summary>True when this process inherited SIGHUP ignored; .NET then installs no handler for it.</summary>
    private static bool HangUpIgnored()
    {
        const int SigHup = 1;
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
            return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (SigHup - 1))) != 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return false;
        }
    }

    private void Report(string what) => _error.WriteLine($"balancer: {what}");

    /// <summary>The incarnation to reload from now on.</summary>
    public void Serve(BalancerExtension balancer)
    {
        Volatile.Write(ref _balancer, balancer);
        balancer.ReadConfigurationWith(Read);
    }

    /// <summary>The node's files and <c>--set</c>s read again, as at start (the node validates what it makes of them).</summary>
    public ConfigurationReading Read()
    {
        try
        {
            return new ConfigurationReading(NodeConfig.Load(_files, _sets), []);
        }
        catch (ConfigLoadException e)
        {
            return new ConfigurationReading(null, [e.Message]);
        }
    }

    private void Reload(string source, bool onlyWhenChanged)
    {
        if (Volatile.Read(ref _balancer) is not { } balancer || Interlocked.Exchange(ref _pending, 0) == 0 && onlyWhenChanged)
        {
            return;
        }
        _reloading.Wait();
        try
        {
            lock (_gate)
            {
                var contents = Contents();
                // A save that changed nothing (or a touch) is not a reload.
                if (onlyWhenChanged && contents == _contents)
                {
                    return;
                }
                _contents = contents;
                if (_watch)
                {
                    // The files read may have changed (an include added or removed).
                    Watch();
                }
            }
            balancer.ReloadAsync(source).GetAwaiter().GetResult();
        }
        catch (BalancerConfigException)
        {
            // Said by the node (its log and event feed), one line per problem.
        }
        catch (Exception e)
        {
            // Not applied (the incarnation was ending, say): the next change or SIGHUP tries again.
            _contents = "";
            Report($"configuration ({source}) not applied: {e.GetBaseException().Message}");
        }
        finally
        {
            _reloading.Release();
        }
    }

    /// <summary>Watches the directories of every file the configuration reads (includes may have changed).</summary>
    private void Watch()
    {
        try
        {
            WatchFiles();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // inotify's limits reached, a directory gone: SIGHUP and ctl config reload still work.
            Report($"cannot watch the configuration files ({e.Message}); reload with SIGHUP or `ctl config reload`");
        }
    }

    private void WatchFiles()
    {
        foreach (var watcher in _watchers)
        {
            watcher.Dispose();
        }
        _watchers.Clear();
        foreach (var directory in NodeConfig.FilesRead(_files).GroupBy(Path.GetDirectoryName))
        {
            if (directory.Key is null || !Directory.Exists(directory.Key))
            {
                continue;
            }
            var names = directory.Select(Path.GetFileName).ToHashSet(StringComparer.Ordinal);
            var watcher = new FileSystemWatcher(directory.Key) { NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size };
            FileSystemEventHandler changed = (_, e) =>
            {
                if (names.Contains(e.Name!))
                {
                    Interlocked.Exchange(ref _pending, 1);
                    _settle.Change(Settle, Timeout.InfiniteTimeSpan);
                }
            };
            watcher.Changed += changed;
            watcher.Created += changed;
            // Editors that save by writing a new file and renaming it over the old one.
            watcher.Renamed += (_, e) => changed(watcher, e);
            watcher.EnableRaisingEvents = true;
            _watchers.Add(watcher);
        }
    }

    /// <summary>A digest of every file read, to tell a real change from a touch.</summary>
    private string Contents()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in NodeConfig.FilesRead(_files))
        {
            try
            {
                hash.AppendData(File.ReadAllBytes(file));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Being written, or not readable: the reload says what is wrong with it.
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        _sighup.Dispose();
        lock (_gate)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Dispose();
            }
            _watchers.Clear();
        }
        // After the watchers, so no late file event finds it gone.
        _settle.Dispose();
    }
}
