using System.Runtime.InteropServices;

namespace Balancer.Node;

/// <summary>The one POSIX call the CLI needs beyond .NET: signalling a process by PID.</summary>
internal static class Posix
{
    public const int SigTerm = 15;
    private const int PermissionDenied = 1;

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/>; false if it failed.</summary>
    public static bool Signal(int pid, int signal) => Kill(pid, signal) == 0;

    /// <summary>True while <paramref name="pid"/> exists (kill(pid, 0) sends nothing, only checks).</summary>
    public static bool IsAlive(int pid) => Kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == PermissionDenied;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
