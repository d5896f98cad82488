using System.Diagnostics;
using Akka.Event;

namespace Balancer.Membership;

/// <summary>
/// Runs <c>hooks.on-active</c> / <c>on-passive</c> (<c>/bin/sh -c</c>, with <c>BALANCER_DUTY</c>,
/// <c>BALANCER_NODE</c> and <c>BALANCER_ACTIVE_NODE</c>) one after the other, in the order of the
/// changes, so that a quick flap cannot finish on-passive before the on-active it follows. A hook
/// that runs longer than 30 s is killed; every outcome is logged.
/// </summary>
internal sealed class DutyHooks(ILoggingAdapter log, string node)
{
    private static readonly TimeSpan HookTimeout = TimeSpan.FromSeconds(30);

    private Task _running = Task.CompletedTask;

    public void Run(string command, NodeDuty duty, string activeNode)
    {
        if (string.IsNullOrWhiteSpace(command))
        {
            return;
        }
        _running = _running.ContinueWith(_ => RunOneAsync(command, duty, activeNode), TaskScheduler.Default).Unwrap();
    }

    private async Task RunOneAsync(string command, NodeDuty duty, string activeNode)
    {
        var name = duty.ToString().ToLowerInvariant();
        try
        {
            var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add(command);
            info.Environment["BALANCER_DUTY"] = name;
            info.Environment["BALANCER_NODE"] = node;
            info.Environment["BALANCER_ACTIVE_NODE"] = activeNode;
            using var process = Process.Start(info)!;
            using var timeout = new CancellationTokenSource(HookTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                log.Error("hook for duty {0} did not finish within {1}s and was killed: {2}", name, HookTimeout.TotalSeconds, command);
                return;
            }
            if (process.ExitCode == 0)
            {
                log.Info("hook for duty {0} ran: {1}", name, command);
            }
            else
            {
                log.Error("hook for duty {0} exited with {1}: {2}", name, process.ExitCode, command);
            }
        }
        catch (Exception e)
        {
            log.Error(e, "hook for duty {0} could not run: {1}", name, command);
        }
    }
}
