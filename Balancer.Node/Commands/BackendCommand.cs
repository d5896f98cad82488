using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using Balancer.Node.Backend;

namespace Balancer.Node.Commands;

/// <summary><c>balancer backend</c>: a demo/test HTTP backend in the foreground.</summary>
internal static class BackendCommand
{
    public static Command Create()
    {
        var port = CliOptions.WholeNumber("--port", "The port to listen on (0: any free port).", 0, 65535, fallback: null);
        port.Required = true;
        var name = new Option<string?>("--name") { Description = "The name it answers with (default backend-PORT).", HelpName = "X" };
        var bind = new Option<IPAddress>("--bind") { Description = "The address to listen on.", HelpName = "IP", DefaultValueFactory = _ => IPAddress.Loopback };
        bind.CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (IPAddress.TryParse(text, out var address))
            {
                return address;
            }
            result.AddError($"--bind expects an IP address, got \"{text}\"");
            return IPAddress.Loopback;
        };
        var latency = CliOptions.WholeNumber("--latency", "Milliseconds added to every response.", 0, 600_000, 0);
        var failRate = CliOptions.Number("--fail-rate", "The share of requests answered with 500 (0 to 1).", 0, 1, 0);
        var command = new Command("backend", "Run a demo backend in the foreground (what `demo` starts): HTTP/1.1 and HTTP/2, a gRPC service and a WebSocket echo on one port.") { port, name, bind, latency, failRate };
        command.SetAction((parse, _) => RunAsync(parse.GetValue(port), parse.GetValue(name), parse.GetValue(bind)!, parse.GetValue(latency), parse.GetValue(failRate), parse.InvocationConfiguration.Output));
        return command;
    }

    private static async Task<int> RunAsync(int port, string? nameGiven, IPAddress bind, int latency, double failRate, TextWriter output)
    {
        var name = nameGiven ?? $"backend-{port}";
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
