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
