namespace Balancer.Tests.TestSupport;

/// <summary>
/// A small tmpfs mounted on a folder the test made (a node's data-dir), which the test fills to the
/// last byte and frees again: a full disk under one node. Unmounted on dispose, by its path.
/// </summary>
internal sealed class SmallDisk : IAsyncDisposable
{
    private readonly string _filler;

    private SmallDisk(string path)
    {
        Path = path;
        _filler = System.IO.Path.Combine(path, "filler");
    }

    public string Path { get; }

    /// <summary>Mounts a tmpfs of <paramref name="megabytes"/> on <paramref name="path"/> (made if missing); needs root.</summary>
    public static async Task<SmallDisk> MountAsync(string path, int megabytes)
    {
        Directory.CreateDirectory(path);
        await TestNetwork.RunAsync("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "balancer-test-disk", path);
        return new SmallDisk(path);
    }

    /// <summary>Writes a file until the disk has no byte left.</summary>
    public void Fill()
    {
        var chunk = new byte[64 * 1024];
        using var file = new FileStream(_filler, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1);
        try
        {
            while (true)
            {
                file.Write(chunk);
            }
        }
        catch (IOException)
        {
        }
        // What is left is smaller than a chunk: a byte at a time, to the last one.
        try
        {
            while (true)
            {
                file.WriteByte(0);
            }
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Deletes what <see cref="Fill"/> wrote.</summary>
    public void Free() => File.Delete(_filler);

    public async ValueTask DisposeAsync() => await TestNetwork.RunAsync(["umount", "--lazy", Path], check: false);
}
