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
        var registerEtcd = new Option<Uri[]>("--register-etcd")
        {
            Description = "Register in etcd (repeatable: its endpoints) under PREFIX/pools/POOL/backends/NAME with a lease, so that Balancer adds it to the pool.",
            HelpName = "URL",
            DefaultValueFactory = _ => [],
        };
        registerEtcd.CustomParser = result =>
        {
            var endpoints = new List<Uri>();
            foreach (var token in result.Tokens)
            {
                if (Uri.TryCreate(token.Value, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
                {
                    endpoints.Add(uri);
                }
                else
                {
                    result.AddError($"--register-etcd expects an etcd endpoint like http://127.0.0.1:2379, got \"{token.Value}\"");
                }
            }
            return [.. endpoints];
        };
        var pool = new Option<string>("--pool") { Description = "The pool to register in.", HelpName = "POOL", DefaultValueFactory = _ => "app" };
        var prefix = new Option<string>("--etcd-prefix") { Description = "The key prefix Balancer reads (balancer.config-source.etcd.prefix).", HelpName = "PREFIX", DefaultValueFactory = _ => "/balancer" };
        var ttl = CliOptions.WholeNumber("--lease-ttl", "Seconds the registration outlives this process when it dies without deregistering.", 2, 3600, 5);
        var certificate = new Option<string?>("--certificate") { Description = "Serve TLS with this certificate (PEM, its key in the same file or in --key, or a .pfx): what a pool with protocol = https or https2 reaches.", HelpName = "FILE" };
        var key = new Option<string?>("--key") { Description = "The PEM private key of --certificate, when not in the same file.", HelpName = "FILE" };
        var clientCa = new Option<string?>("--client-ca") { Description = "Require a client certificate issued by this CA (PEM): mutual TLS, as a pool's tls.certificate presents.", HelpName = "FILE" };
        var command = new Command("backend", "Run a demo backend in the foreground (what `demo` starts): HTTP/1.1 and HTTP/2, a gRPC service and a WebSocket echo on one port.") { port, name, bind, latency, failRate, registerEtcd, pool, prefix, ttl, certificate, key, clientCa };
        command.Validators.Add(result =>
        {
            if (result.GetValue(certificate) is null)
            {
                foreach (var needsCertificate in new[] { key, clientCa })
                {
                    if (result.GetResult(needsCertificate) is not null)
                    {
                        result.AddError($"{needsCertificate.Name} needs --certificate (the backend serves TLS only with a certificate)");
                    }
                }
            }
        });
        command.SetAction((parse, _) => RunAsync(parse.GetValue(port), parse.GetValue(name), parse.GetValue(bind)!, parse.GetValue(latency), parse.GetValue(failRate), parse.InvocationConfiguration.Output,
            new Registration(parse.GetValue(registerEtcd)!, parse.GetValue(prefix)!.TrimEnd('/'), parse.GetValue(pool)!, TimeSpan.FromSeconds(parse.GetValue(ttl))),
            parse.GetValue(certificate) is { } file ? LoadTls(file, parse.GetValue(key), parse.GetValue(clientCa)) : null));
        return command;
    }

    /// <summary>The backend's certificate and the CA its clients' certificates must come from; a file that does not load is a usage error naming it.</summary>
    private static DemoBackendTls LoadTls(string certificate, string? key, string? clientCa)
    {
        System.Security.Cryptography.X509Certificates.X509Certificate2 served;
        try
        {
            served = Balancer.Configuration.Certificates.Load(new Balancer.Configuration.CertificateFiles(certificate, key ?? ""), "");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new UsageException($"--certificate: cannot load {certificate}{(key is null ? "" : $" with the key {key}")}: {e.Message}");
        }
        if (clientCa is null)
        {
            return new DemoBackendTls(served, null);
        }
        try
        {
            return new DemoBackendTls(served, System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(clientCa));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new UsageException($"--client-ca: cannot load {clientCa}: {e.Message}");
        }
    }

    /// <summary>Where the backend registers itself (no endpoints: it does not).</summary>
    private sealed record Registration(Uri[] Endpoints, string Prefix, string Pool, TimeSpan Ttl);

    private static async Task<int> RunAsync(int port, string? nameGiven, IPAddress bind, int latency, double failRate, TextWriter output, Registration registration, DemoBackendTls? tls)
    {
        if (registration.Endpoints.Length > 0 && (bind.Equals(IPAddress.Any) || bind.Equals(IPAddress.IPv6Any)))
        {
            throw new UsageException($"--register-etcd registers the address it listens on: give --bind the address the nodes reach it at, not {bind}");
        }
        var name = nameGiven ?? $"backend-{port}";
        await using var backend = new DemoBackend(name, new IPEndPoint(bind, port), latency, failRate, tls);
        try
        {
            await backend.StartAsync();
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"balancer backend: cannot listen on {bind}:{port}: {e.Message}");
            return 1;
        }
        output.WriteLine($"backend {name} listening on {(tls is null ? "http" : "https")}://{bind}:{backend.Port}{(tls?.ClientAuthority is null ? "" : " (client certificates required)")}");
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        ParentWatch.Start(stop);
        await using (var registered = registration.Endpoints.Length == 0 ? null
            : new EtcdRegistration(registration.Endpoints, registration.Prefix, registration.Pool, name, $"{bind}:{backend.Port}", registration.Ttl, output))
        {
            await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { });
        }
        await backend.StopAsync();
        return 0;
    }
}
