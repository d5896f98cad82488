using System.Collections.Immutable;
using System.Runtime.InteropServices;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.DistributedData.Durable;
using Akka.Event;
using LightningDB;

namespace Balancer.Replication;

/// <summary>
/// The durable store of Balancer's replicated runtime configuration: a LightningDB environment,
/// one entry per replicated key, written through on every change so that a full-cluster restart
/// finds every drain, weight and added backend again. It speaks the Replicator's durable-store
/// protocol (LoadAll, then Store), and is configured like Akka's own store:
/// <c>balancer.replication.durable.store-actor-class = "Balancer.Replication.LmdbDurableStore, Balancer.Actors"</c>
/// with <c>durable.lmdb.dir</c> and <c>durable.lmdb.map-size</c>.
/// </summary>
public sealed class LmdbDurableStore : ReceiveActor, IWithTimers
{
    /// <summary>How often writes that failed (a full disk) are tried again until they are stored.</summary>
    internal static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(2);

    private readonly string _directory;
    // The latest value (encoded) of each key whose write failed, written again every RetryInterval:
    // a change refused to its caller for want of space is stored once space is freed, not lost.
    private readonly Dictionary<string, byte[]> _unstored = new();
    private readonly DurableStoreHealth _health = DurableStoreHealth.Get(Context.System);
    private readonly long _mapSize;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Akka.Serialization.Serialization _serialization = Context.System.Serialization;
    private LightningEnvironment? _environment;

    static LmdbDurableStore()
    {
        // The build puts a liblmdb made for this machine next to the application (see
        // Balancer.Actors.csproj); prefer it to the one LightningDB ships under runtimes/.
        NativeLibrary.SetDllImportResolver(typeof(LightningEnvironment).Assembly, (name, assembly, searchPath) =>
        {
            if (name != "lmdb")
            {
                return IntPtr.Zero;
            }
            var file = OperatingSystem.IsWindows() ? "lmdb.dll" : OperatingSystem.IsMacOS() ? "lmdb.dylib" : "liblmdb.so";
            var os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
            var arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
            foreach (var candidate in new[]
            {
                Path.Combine(AppContext.BaseDirectory, file),
                Path.Combine(AppContext.BaseDirectory, "runtimes", $"{os}-{arch}", "native", file),
                Path.Combine(AppContext.BaseDirectory, "runtimes", os, "native", file),
            })
            {
                if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle))
                {
                    return handle;
                }
            }
            return NativeLibrary.TryLoad(name, assembly, searchPath, out var fallback) ? fallback : IntPtr.Zero;
        });
    }

    /// <summary>Created by the Replicator with the <c>durable</c> configuration section.</summary>
    public LmdbDurableStore(Config config)
    {
        _directory = config.GetString("lmdb.dir", "ddata");
        _mapSize = config.GetByteSize("lmdb.map-size") ?? 100L * 1024 * 1024;

        Receive<LoadAll>(_ =>
        {
            ImmutableDictionary<string, DurableDataEnvelope> loaded;
            try
            {
                loaded = LoadAll();
            }
            catch (Exception e) when (UnreadableFile(e))
            {
                // A replicator whose store fails to load stops, and leaves a node that looks healthy
                // but replicates nothing. The unreadable store (a torn or corrupt file) is moved aside
                // for a person to look at instead, and the node starts with an empty one that its
                // peers' gossip fills in.
                MoveAside(e);
                loaded = LoadOrFail();
            }
            catch (Exception e)
            {
                // Not the file's fault (no liblmdb, no permission, no space, a bad map-size): every
                // node would meet it, and moving good stores aside would lose them all. Stop loudly.
                throw new LoadFailedException($"could not load durable state from {_directory}: {e.GetBaseException().Message}", e);
            }
            if (loaded.Count > 0)
            {
                Sender.Tell(new LoadData(loaded));
            }
            Sender.Tell(LoadAllCompleted.Instance);
            _log.Info("durable state: {0} key(s) loaded from {1}", loaded.Count, _directory);
        });
        Receive<Store>(store =>
        {
            _unstored.Remove(store.Key);
            if (!TryEncode(store.Key, store.Data, out var bytes))
            {
                store.Reply?.ReplyTo.Tell(store.Reply.FailureMessage);
                return;
            }
            if (TryWrite(store.Key, bytes))
            {
                store.Reply?.ReplyTo.Tell(store.Reply.SuccessMessage);
                RecoveredIfAllStored();
            }
            else
            {
                _unstored[store.Key] = bytes;
                store.Reply?.ReplyTo.Tell(store.Reply.FailureMessage);
            }
        });
        Receive<RetryUnstored>(_ =>
        {
            foreach (var (key, data) in _unstored.ToList())
            {
                if (!TryWrite(key, data))
                {
                    return;
                }
                _unstored.Remove(key);
            }
            RecoveredIfAllStored();
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>
    /// Encodes one value. One that cannot be encoded is a fault of the value's serializer, not of
    /// the disk: it is logged, answered as not stored, and not tried again (it would fail the same
    /// way for ever); the store does not count as failing for it.
    /// </summary>
    private bool TryEncode(string key, DurableDataEnvelope data, out byte[] bytes)
    {
        try
        {
            bytes = Encode(data);
            return true;
        }
        catch (Exception e)
        {
            _log.Error(e, "durable state: cannot encode {0} ({1}); it is replicated but not stored durably", key, e.GetBaseException().Message);
            bytes = [];
            return false;
        }
    }

    /// <summary>
    /// Writes one key; a failure (no space, an I/O error) marks the store failing, said once in the
    /// log and as an event, and the write is tried again until it succeeds, which says so too.
    /// </summary>
    private bool TryWrite(string key, byte[] bytes)
    {
        try
        {
            Write(key, bytes);
        }
        catch (Exception e)
        {
            if (IsPanic(e))
            {
                // LMDB's answer after a fatal error: the environment must be closed and opened again.
                _environment?.Dispose();
                _environment = null;
            }
            var reason = e.GetBaseException().Message;
            if (_health.Failure is null)
            {
                _log.Error(e, "durable state: could not store {0} in {1} ({2}); this node keeps serving and replicating, and tries again every {3} s", key, _directory, reason, RetryInterval.TotalSeconds);
                _health.Failed(_directory, reason);
                Context.System.EventStream.Publish(new DurableStoreFailing(_directory, reason, Failing: true));
            }
            Timers.StartSingleTimer(RetryUnstored.Instance, RetryUnstored.Instance, RetryInterval);
            return false;
        }
        return true;
    }

    /// <summary>
    /// Free space the store's volume must have again before a store that failed counts as writing:
    /// on a full disk LightningDB still rewrites what fits in the pages it has, and fails only when
    /// it must grow, so one write that succeeds says nothing.
    /// </summary>
    internal const long RecoveryFreeSpace = 1024 * 1024;

    private void RecoveredIfAllStored()
    {
        if (_health.Failure is null || _unstored.Count > 0)
        {
            return;
        }
        if (FreeSpace() is { } free && free < RecoveryFreeSpace)
        {
            Timers.StartSingleTimer(RetryUnstored.Instance, RetryUnstored.Instance, RetryInterval);
            return;
        }
        _log.Info("durable state: writes to {0} succeed again; every change is stored", _directory);
        _health.Recovered();
        Context.System.EventStream.Publish(new DurableStoreFailing(_directory, "writes succeed again", Failing: false));
    }

    /// <summary>Bytes free for this process on the store's volume, or null when the system cannot tell.</summary>
    private long? FreeSpace()
    {
        try
        {
            return new DriveInfo(_directory).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    private sealed class RetryUnstored
    {
        public static readonly RetryUnstored Instance = new();
    }

    protected override void PostStop() => _environment?.Dispose();

    private static readonly string[] UnreadableFileErrors = ["MDB_INVALID", "MDB_CORRUPTED", "MDB_PAGE_NOTFOUND", "MDB_VERSION_MISMATCH"];

    /// <summary>
    /// LMDB's answers for a file that is not (or no longer) a readable environment, anywhere in the
    /// chain (LightningDB wraps LMDB's own error in one of its own, with status 0).
    /// </summary>
    private static bool UnreadableFile(Exception e)
    {
        for (Exception? current = e; current is not null; current = current.InnerException)
        {
            if (current is LightningException { StatusCode: -30793 or -30796 or -30797 or -30794 }
                || UnreadableFileErrors.Any(error => current.Message.StartsWith(error, StringComparison.Ordinal)))
            {
                return true;
            }
        }
        return false;
    }

    private ImmutableDictionary<string, DurableDataEnvelope> LoadOrFail()
    {
        try
        {
            return LoadAll();
        }
        catch (Exception e)
        {
            throw new LoadFailedException($"could not load durable state from a new store in {_directory}: {e.GetBaseException().Message}", e);
        }
    }

    /// <summary>Moves the unreadable store to <c>DIR.unreadable-TIME</c> and says so; the node cannot start when even that fails.</summary>
    private string MoveAside(Exception cause)
    {
        _environment?.Dispose();
        _environment = null;
        var reason = cause.GetBaseException().Message;
        var movedTo = $"{_directory.TrimEnd('/', '\\')}.unreadable-{DateTime.UtcNow:yyyyMMdd'T'HHmmssfff'Z'}";
        try
        {
            Directory.Move(_directory, movedTo);
        }
        catch (Exception e)
        {
            throw new LoadFailedException($"durable state in {_directory} cannot be read ({reason}) nor moved aside ({e.Message}); move or delete it and start again", cause);
        }
        _log.Error("durable state in {0} cannot be read ({1}): moved to {2}; starting with an empty store, which this node's peers fill in", _directory, reason, movedTo);
        Context.System.EventStream.Publish(new DurableStoreRebuilt(_directory, movedTo, reason));
        return movedTo;
    }

    private LightningEnvironment Environment()
    {
        if (_environment is not null)
        {
            return _environment;
        }
        Directory.CreateDirectory(_directory);
        var environment = new LightningEnvironment(_directory) { MapSize = _mapSize, MaxDatabases = 1 };
        try
        {
            environment.Open(EnvironmentOpenFlags.None);
        }
        catch
        {
            // A half-made environment must not reach its finalizer, which would call into LMDB again.
            GC.SuppressFinalize(environment);
            throw;
        }
        return _environment = environment;
    }

    private ImmutableDictionary<string, DurableDataEnvelope> LoadAll()
    {
        var result = ImmutableDictionary.CreateBuilder<string, DurableDataEnvelope>();
        using var transaction = Environment().BeginTransaction(TransactionBeginFlags.ReadOnly);
        using var database = transaction.OpenDatabase(configuration: new DatabaseConfiguration { Flags = DatabaseOpenFlags.None });
        using var cursor = transaction.CreateCursor(database);
        var (code, key, value) = cursor.First();
        while (code == MDBResultCode.Success)
        {
            var name = Encoding.UTF8.GetString(key.AsSpan());
            try
            {
                result[name] = Decode(value.AsSpan().ToArray());
            }
            catch (Exception e)
            {
                // One unreadable entry (written by a newer node?) must not cost the others.
                _log.Error(e, "durable state: skipping {0}: {1}", name, e.Message);
            }
            (code, key, value) = cursor.Next();
        }
        return result.ToImmutable();
    }

    private const int MdbPanic = -30795;

    /// <summary>MDB_PANIC anywhere in the chain (LightningDB may wrap LMDB's error in one of its own).</summary>
    private static bool IsPanic(Exception e)
    {
        for (Exception? current = e; current is not null; current = current.InnerException)
        {
            if (current is LightningException { StatusCode: MdbPanic } || current.Message.StartsWith("MDB_PANIC", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    private void Write(string key, byte[] bytes)
    {
        var environment = Environment();
        using var transaction = environment.BeginTransaction();
        using var database = transaction.OpenDatabase(configuration: new DatabaseConfiguration { Flags = DatabaseOpenFlags.Create });
        transaction.Put(database, Encoding.UTF8.GetBytes(key), bytes).ThrowOnError();
        transaction.Commit().ThrowOnError();
    }

    // Entry layout: serializer id (int32), manifest length (int32), manifest (UTF-8), payload.
    private byte[] Encode(DurableDataEnvelope data)
    {
        var serializer = _serialization.FindSerializerFor(data);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, data);
        var payload = serializer.ToBinary(data);
        var manifestBytes = Encoding.UTF8.GetBytes(manifest);
        var buffer = new byte[8 + manifestBytes.Length + payload.Length];
        BitConverter.TryWriteBytes(buffer.AsSpan(0, 4), serializer.Identifier);
        BitConverter.TryWriteBytes(buffer.AsSpan(4, 4), manifestBytes.Length);
        manifestBytes.CopyTo(buffer, 8);
        payload.CopyTo(buffer, 8 + manifestBytes.Length);
        return buffer;
    }

    private DurableDataEnvelope Decode(byte[] entry)
    {
        var serializerId = BitConverter.ToInt32(entry, 0);
        var manifestLength = BitConverter.ToInt32(entry, 4);
        var manifest = Encoding.UTF8.GetString(entry, 8, manifestLength);
        var payload = entry.AsSpan(8 + manifestLength).ToArray();
        return (DurableDataEnvelope)_serialization.Deserialize(payload, serializerId, manifest);
    }
}
