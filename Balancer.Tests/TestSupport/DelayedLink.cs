using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// Latency on one host's link without <c>tc netem</c> (which not every kernel has): the packets the
/// host sends on the chosen TCP port (either end) are routed into a TUN device of its own, held
/// here for the delay (± jitter) and written back into the TUN device, from which the host
/// forwards them onto its real interface. Each packet is late by its own draw, so packets overtake
/// each other now and then, as with netem's jitter. Its received packets are untouched, as netem
/// on its interface would leave them. Made in the host's namespace by a thread of this process
/// that enters it (setns); removed on dispose (route rules and table first, then the device, which
/// goes with its file descriptor).
/// </summary>
internal sealed class DelayedLink : IAsyncDisposable
{
    private const string Device = "delay0";
    private const string Table = "4053";
    private const int CloneNewNet = 0x40000000;
    private const ulong TunSetInterface = 0x400454ca;
    private const short InterfaceTun = 0x0001;
    private const short InterfaceNoPacketInfo = 0x1000;
    private const short PollIn = 0x0001;

    private readonly string _namespace;
    private readonly int _port;
    private readonly TimeSpan _delay;
    private readonly TimeSpan _jitter;
    private readonly int _tun;
    private readonly PriorityQueue<byte[], long> _held = new();
    private readonly Thread _reader;
    private readonly Thread _writer;
    private volatile bool _stopping;
    private long _delayed;

    private DelayedLink(string ns, int port, TimeSpan delay, TimeSpan jitter, int tun)
    {
        _namespace = ns;
        _port = port;
        _delay = delay;
        _jitter = jitter;
        _tun = tun;
        _reader = new Thread(Read) { IsBackground = true, Name = "delayed-link-read" };
        _writer = new Thread(Write) { IsBackground = true, Name = "delayed-link-write" };
    }

    /// <summary>Packets held and passed on so far.</summary>
    public long Delayed => Interlocked.Read(ref _delayed);

    /// <summary>Delays what host namespace <paramref name="ns"/> sends on TCP port <paramref name="port"/> by <paramref name="delay"/> ± <paramref name="jitter"/>.</summary>
    public static async Task<DelayedLink> StartAsync(string ns, int port, TimeSpan delay, TimeSpan jitter)
    {
        var link = new DelayedLink(ns, port, delay, jitter, OpenTunIn(ns));
        try
        {
            link._reader.Start();
            link._writer.Start();
            string[][] setUp =
            [
                ["ip", "link", "set", Device, "up"],
                // What comes back out of the device is forwarded onto the real interface; its
                // source is this host's own address, which the kernel otherwise takes for a spoof.
                ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", $"net.ipv4.conf.{Device}.rp_filter=0", $"net.ipv4.conf.{Device}.accept_local=1"],
                ["ip", "route", "add", "198.18.0.0/24", "dev", Device, "table", Table],
                // Only what this host itself sends (iif lo), so the packets written back take the main table.
                ["ip", "rule", "add", "iif", "lo", "ipproto", "tcp", "dport", port.ToString(), "table", Table, "pref", "4053"],
                ["ip", "rule", "add", "iif", "lo", "ipproto", "tcp", "sport", port.ToString(), "table", Table, "pref", "4054"],
            ];
            foreach (var command in setUp)
            {
                await TestNetwork.RunAsync(["ip", "netns", "exec", ns, .. command]);
            }
            return link;
        }
        catch
        {
            await link.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pref in new[] { "4053", "4054" })
        {
            await TestNetwork.RunAsync(["ip", "netns", "exec", _namespace, "ip", "rule", "del", "pref", pref], check: false);
        }
        await TestNetwork.RunAsync(["ip", "netns", "exec", _namespace, "ip", "route", "flush", "table", Table], check: false);
        _stopping = true;
        lock (_held)
        {
            Monitor.PulseAll(_held);
        }
        _reader.Join(TimeSpan.FromSeconds(2));
        _writer.Join(TimeSpan.FromSeconds(2));
        close(_tun);
    }

    /// <summary>Opens a new TUN device in namespace <paramref name="ns"/>: a device is made in the namespace of the thread that asks for it.</summary>
    private static int OpenTunIn(string ns)
    {
        var result = -1;
        string? problem = null;
        var thread = new Thread(() =>
        {
            using var handle = File.OpenHandle($"/run/netns/{ns}");
            if (setns((int)handle.DangerousGetHandle(), CloneNewNet) != 0)
            {
                problem = $"setns into {ns}: errno {Marshal.GetLastPInvokeError()}";
                return;
            }
            // O_RDWR | O_CLOEXEC: the processes the tests start must not hold the device open.
            var tun = open("/dev/net/tun", 0x2 | 0x80000);
            if (tun < 0)
            {
                problem = $"open /dev/net/tun: errno {Marshal.GetLastPInvokeError()}";
                return;
            }
            // struct ifreq: the name (16 bytes), then the flags.
            var request = new byte[40];
            System.Text.Encoding.ASCII.GetBytes(Device).CopyTo(request, 0);
            BitConverter.TryWriteBytes(request.AsSpan(16, 2), (short)(InterfaceTun | InterfaceNoPacketInfo));
            if (ioctl(tun, TunSetInterface, request) != 0)
            {
                problem = $"TUNSETIFF {Device}: errno {Marshal.GetLastPInvokeError()}";
                close(tun);
                return;
            }
            result = tun;
        }) { IsBackground = true };
        // The thread ends inside the namespace; no other work of this process runs on it.
        thread.Start();
        thread.Join();
        return problem is null ? result : throw new InvalidOperationException(problem);
    }

    private void Read()
    {
        var buffer = new byte[65536];
        var poll = new PollDescriptor { Descriptor = _tun, Events = PollIn };
        while (!_stopping)
        {
            if (Poll(ref poll, 1, 100) <= 0)
            {
                continue;
            }
            if ((poll.Returned & PollIn) == 0)
            {
                // POLLERR or POLLHUP: nothing to read; do not spin on it.
                Thread.Sleep(10);
                continue;
            }
            var length = (int)read(_tun, buffer, buffer.Length);
            if (length <= 0)
            {
                continue;
            }
            var spread = (Random.Shared.NextDouble() * 2 - 1) * _jitter.TotalSeconds;
            var due = Stopwatch.GetTimestamp() + (long)((_delay.TotalSeconds + spread) * Stopwatch.Frequency);
            lock (_held)
            {
                _held.Enqueue(buffer[..length], due);
                Monitor.Pulse(_held);
            }
        }
    }

    private void Write()
    {
        while (!_stopping)
        {
            byte[] packet;
            lock (_held)
            {
                if (!_held.TryPeek(out _, out var due))
                {
                    Monitor.Wait(_held, 100);
                    continue;
                }
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero)
                {
                    Monitor.Wait(_held, wait);
                    continue;
                }
                packet = _held.Dequeue();
            }
            write(_tun, packet, packet.Length);
            Interlocked.Increment(ref _delayed);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Descriptor;
        public short Events;
        public short Returned;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setns(int fd, int nstype);

    [DllImport("libc", SetLastError = true)]
    private static extern int open(string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int ioctl(int fd, ulong request, byte[] argument);

    [DllImport("libc", SetLastError = true)]
    private static extern nint read(int fd, byte[] buffer, nint count);

    [DllImport("libc", SetLastError = true)]
    private static extern nint write(int fd, byte[] buffer, nint count);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);

    [DllImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static extern int Poll(ref PollDescriptor descriptors, ulong count, int timeoutMilliseconds);
}
