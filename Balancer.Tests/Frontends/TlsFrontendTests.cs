using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Frontends;

/// <summary>TLS termination on an HTTP frontend with real handshakes: SNI, ALPN, reload, HSTS.</summary>
[Collection(SerialCollection.Name)]
public class TlsFrontendTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("balancer-tls-").FullName;

    [Fact]
    public async Task TwoSniNames_EachGetsItsCertificate_H2ByAlpn_ReloadedWhenTheFileChanges()
    {
        var (alphaCert, alphaKey) = WritePem("alpha.test", "alpha-1");
        var (betaCert, betaKey) = WritePem("beta.test", "beta-1");
        await using var backends = await BackendSet.StartAsync("a");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer.frontends.web {
              bind = "127.0.0.1:0", pool = app
              tls { certificate = "{{alphaCert}}", key = "{{alphaKey}}", sni-certificates = ["{{betaCert}},{{betaKey}}"], hsts = 365d }
            }
            balancer.pools.app { health-check.kind = none, {{backends.Hocon()}} }
            """);
        var endPoint = host.EndPoint("web");

        Assert.Equal(("CN=alpha.test, O=alpha-1", "h2"), await HandshakeAsync(endPoint, "alpha.test", "h2", "http/1.1"));
        Assert.Equal(("CN=beta.test, O=beta-1", "h2"), await HandshakeAsync(endPoint, "beta.test", "h2", "http/1.1"));
        Assert.Equal(("CN=alpha.test, O=alpha-1", "http/1.1"), await HandshakeAsync(endPoint, "unknown.test", "http/1.1"));

        // A request over HTTP/2 and TLS reaches the backend.
        using var http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(endPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate?.Subject.Contains("beta.test") == true },
        });
        using var request = new HttpRequestMessage(HttpMethod.Get, "https://beta.test/") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("a", response.Headers.GetValues("X-Backend").Single());
        Assert.Equal("max-age=31536000", response.Headers.GetValues("Strict-Transport-Security").Single());

        // A renewed certificate is served without a restart.
        WritePem("beta.test", "beta-2", betaCert, betaKey);
        await Eventually.Holds(async () => Assert.Equal("CN=beta.test, O=beta-2", (await HandshakeAsync(endPoint, "beta.test", "h2")).Subject), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Http2_ManyConcurrentStreamsOnOneConnection_AllAnswered_FromTheFirstRequestOn()
    {
        // The streams of one HTTP/2 connection reach the proxy at once, first requests included,
        // while the first-request deadline of that connection is still armed.
        var (certificate, key) = WritePem("alpha.test", "alpha-1");
        await using var backends = await BackendSet.StartAsync("a", "b");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app, tls { certificate = "{{certificate}}", key = "{{key}}" } }
            balancer.pools.app { health-check.kind = none, {{backends.Hocon()}} }
            """);
        var endPoint = host.EndPoint("web");
        var connections = 0;
        using var http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            EnableMultipleHttp2Connections = false,
            ConnectCallback = async (_, cancellationToken) =>
            {
                Interlocked.Increment(ref connections);
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(endPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true },
        });
        for (var round = 0; round < 3; round++)
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 100).Select(async i =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"https://alpha.test/r{round}-{i}") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                using var response = await http.SendAsync(request);
                return (response.StatusCode, response.Version);
            }));
            Assert.All(answers, a => Assert.Equal((HttpStatusCode.OK, HttpVersion.Version20), a));
        }
        Assert.Equal(1, connections);
    }

    [Fact]
    public async Task TcpPassthrough_RoutesBySni_EndToEndTlsToTheBackendOfThatName()
    {
        var (alphaCert, alphaKey) = WritePem("alpha.test", "alpha-backend");
        var (betaCert, betaKey) = WritePem("beta.test", "beta-backend");
        using var alpha = new TlsEchoServer(alphaCert, alphaKey, "alpha");
        using var beta = new TlsEchoServer(betaCert, betaKey, "beta");
        await using var host = await BalancerHost.StartAsync($$"""
            balancer.frontends.secure { mode = tcp, bind = "127.0.0.1:0", pool = alpha, sni-routes = ["beta.test=beta", "*.beta.test=beta"] }
            balancer.pools {
              alpha { health-check.kind = none, backends.a = "127.0.0.1:{{alpha.Port}}" }
              beta { health-check.kind = none, backends.b = "127.0.0.1:{{beta.Port}}" }
            }
            """);
        var endPoint = host.EndPoint("secure");
        Assert.Equal(("CN=beta.test, O=beta-backend", "beta"), await TlsRoundTripAsync(endPoint, "beta.test"));
        Assert.Equal(("CN=alpha.test, O=alpha-backend", "alpha"), await TlsRoundTripAsync(endPoint, "alpha.test"));
        // No match goes to the frontend's pool; the wildcard matches one label.
        Assert.Equal("alpha", (await TlsRoundTripAsync(endPoint, "other.test")).Reply);
        Assert.Equal("beta", (await TlsRoundTripAsync(endPoint, "api.beta.test")).Reply);
    }

    private static async Task<(string Subject, string Reply)> TlsRoundTripAsync(IPEndPoint endPoint, string serverName)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint).WaitAsync(TimeSpan.FromSeconds(10));
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        }).WaitAsync(TimeSpan.FromSeconds(10));
        var buffer = new byte[64];
        var read = await tls.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        return (tls.RemoteCertificate!.Subject, System.Text.Encoding.ASCII.GetString(buffer, 0, read));
    }

    /// <summary>A TLS server that completes the handshake with its certificate and writes its name.</summary>
    private sealed class TlsEchoServer : IDisposable
    {
        private readonly RawTcpServer _server;

        public TlsEchoServer(string certificateFile, string keyFile, string name)
        {
            using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
            var certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            _server = new RawTcpServer(async client =>
            {
                using (client)
                {
                    try
                    {
                        await using var tls = new SslStream(new NetworkStream(client, ownsSocket: false));
                        await tls.AuthenticateAsServerAsync(certificate);
                        await tls.WriteAsync(System.Text.Encoding.ASCII.GetBytes(name));
                        await tls.FlushAsync();
                        await Task.Delay(200);
                    }
                    catch (Exception)
                    {
                    }
                }
            });
        }

        public int Port => _server.Port;

        public void Dispose() => _server.Dispose();
    }

    [Fact]
    public void UnreadableCertificate_IsAConfigurationProblemNamingTheFile()
    {
        var missing = Path.Combine(_directory, "missing.pem");
        Assert.False(BalancerSettings.TryCreate(Akka.Configuration.ConfigurationFactory.ParseString($$"""
            balancer.frontends.web { bind = "127.0.0.1:0", pool = app, tls.certificate = "{{missing}}" }
            balancer.pools.app.backends.a = "127.0.0.1:9001"
            """), out _, out var problems));
        var problem = Assert.Single(problems);
        Assert.Equal("balancer.frontends.web.tls.certificate", problem.Path);
        Assert.Contains($"cannot read {missing}", problem.Message);
    }

    private static async Task<(string Subject, string Protocol)> HandshakeAsync(IPEndPoint endPoint, string serverName, params string[] protocols)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint).WaitAsync(TimeSpan.FromSeconds(10));
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            ApplicationProtocols = protocols.Select(p => new SslApplicationProtocol(p)).ToList(),
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        }).WaitAsync(TimeSpan.FromSeconds(10));
        return (tls.RemoteCertificate!.Subject, tls.NegotiatedApplicationProtocol.ToString());
    }

    /// <summary>A self-signed certificate for <paramref name="name"/> as PEM files (O= tells versions apart).</summary>
    private (string Certificate, string Key) WritePem(string name, string organization, string? certificatePath = null, string? keyPath = null)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}, O={organization}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        certificatePath ??= Path.Combine(_directory, $"{name}.pem");
        keyPath ??= Path.Combine(_directory, $"{name}.key");
        // Key first, then the certificate: the store reloads once both have changed.
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        return (certificatePath, keyPath);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
