using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Balancer.Configuration;
using Balancer.Node.Commands;

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
    private readonly Timer _settle;
    private BalancerExtension? _balancer;
    private string _contents;
    private int _pending;

    public ConfigurationReload(IReadOnlyList<string> files, IReadOnlyList<string> sets, bool watch, TextWriter error)
    {
        _files = files;
        _sets = sets;
        _error = error;
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
    }

    /// <summary>The incarnation to reload from now on.</summary>
    public void Serve(BalancerExtension balancer)
    {
        Volatile.Write(ref _balancer, balancer);
        balancer.ReadConfigurationWith(Read);
    }

    /// <summary>The node's files and <c>--set</c>s read again and validated, as at start.</summary>
    public ConfigurationReading Read()
    {
        var problems = CheckConfigCommand.Validate(_files, _sets);
        return problems.Count > 0
            ? new ConfigurationReading(null, problems)
            : new ConfigurationReading(BalancerSettings.Create(NodeConfig.Load(_files, _sets)), []);
    }

    private void Reload(string source, bool onlyWhenChanged)
    {
        if (Volatile.Read(ref _balancer) is not { } balancer || Interlocked.Exchange(ref _pending, 0) == 0 && onlyWhenChanged)
        {
            return;
        }
        lock (_gate)
        {
            var contents = Contents();
            // A save that changed nothing (or a touch) is not a reload.
            if (onlyWhenChanged && contents == _contents)
            {
                return;
            }
            _contents = contents;
            Watch();
        }
        try
        {
            balancer.ReloadAsync(source).GetAwaiter().GetResult();
        }
        catch (BalancerConfigException)
        {
            // Said by the node (its log and event feed), one line per problem.
        }
        catch (Exception e)
        {
            _error.WriteLine($"balancer: configuration ({source}) not applied: {e.GetBaseException().Message}");
        }
    }

    /// <summary>Watches the directories of every file the configuration reads (includes may have changed).</summary>
    private void Watch()
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
            catch (IOException)
            {
                // Being written: the next event reads it whole.
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        _sighup.Dispose();
        _settle.Dispose();
        lock (_gate)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Dispose();
            }
            _watchers.Clear();
        }
    }
}
