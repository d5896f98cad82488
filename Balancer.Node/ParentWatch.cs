namespace Balancer.Node;

/// <summary>
/// Children started by <c>balancer demo</c> exit when the launcher dies, even by kill -9, so a demo
/// never leaves orphans behind: the launcher passes its PID in <see cref="EnvironmentVariable"/>.
/// </summary>
internal static class ParentWatch
{
    public const string EnvironmentVariable = "BALANCER_PARENT_PID";

    /// <summary>Cancels <paramref name="stop"/> once the parent named in the environment is gone.</summary>
    public static void Start(CancellationTokenSource stop)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable(EnvironmentVariable), out var parent) || parent <= 1)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (!Posix.IsAlive(parent))
                {
                    Console.Error.WriteLine($"balancer: parent process {parent} is gone; stopping");
                    stop.Cancel();
                    return;
                }
                await Task.Delay(500).ConfigureAwait(false);
            }
        });
    }
}
