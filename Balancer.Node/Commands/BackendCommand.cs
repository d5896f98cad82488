using System.Net;
using System.Runtime.InteropServices;
using Balancer.Node.Backend;

namespace Balancer.Node.Commands;

/// <summary><c>balancer backend</c>: a demo/test HTTP backend in the foreground.</summary>
internal static class BackendCommand
{
    public const string Usage = "balancer backend --port N [--name X] [--bind IP] [--latency MS] [--fail-rate P]";

    public static async Task<int> RunAsync(CommandLine args, TextWriter output)
    {
        var port = args.Int("port", -1, 0, 65535);
        if (port < 0)
        {
            throw new UsageException("backend needs --port N");
        }
        var name = args.One("name") ?? $"backend-{port}";
        var bindText = args.One("bind") ?? "127.0.0.1";
        if (!IPAddress.TryParse(bindText, out var bind))
        {
            throw new UsageException($"--bind expects an IP address, got \"{bindText}\"");
        }
        var latency = args.Int("latency", 0, 0, 600_000);
        var failRate = args.Double("fail-rate", 0, 0, 1);
        args.RejectUnknown();
        if (args.Positional.Count > 0)
        {
            throw new UsageException($"unexpected argument \"{args.Positional[0]}\"");
        }

        await using var backend = new DemoBackend(name, new IPEndPoint(bind, port), latency, failRate);
        try
        {
            await backend.StartAsync();
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"balancer backend: cannot listen on {bind}:{port}: {e.Message}");
            return 1;
        }
        output.WriteLine($"backend {name} listening on http://{bind}:{backend.Port}");
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        ParentWatch.Start(stop);
        await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { });
        await backend.StopAsync();
        return 0;
    }
}
