using System.Net;
using System.Net.Http;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Balancer.Tests.TestSupport;

/// <summary>A throwaway CA and the certificates it issues, written as PEM files to a folder removed on dispose.</summary>
internal sealed class TestCertificates : IDisposable
{
    private readonly RSA _authorityKey = RSA.Create(2048);

    public TestCertificates(string subject = "CN=Balancer Test CA")
    {
        Directory = Path.Combine(Path.GetTempPath(), "balancer-certs-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
        var request = new CertificateRequest(subject, _authorityKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        Authority = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        AuthorityFile = Path.Combine(Directory, "ca.pem");
        File.WriteAllText(AuthorityFile, Authority.ExportCertificatePem());
    }

    public string Directory { get; }

    public X509Certificate2 Authority { get; }

    /// <summary>The CA's certificate as a PEM file.</summary>
    public string AuthorityFile { get; }

    /// <summary>A certificate for <paramref name="name"/> (also valid for 127.0.0.1) with its key, as files and loaded.</summary>
    public (string Certificate, string Key, X509Certificate2 Loaded) Issue(string name, bool serverAuth = true, bool clientAuth = false)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        var usages = new OidCollection();
        if (serverAuth)
        {
            usages.Add(new Oid("1.3.6.1.5.5.7.3.1"));
        }
        if (clientAuth)
        {
            usages.Add(new Oid("1.3.6.1.5.5.7.3.2"));
        }
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.Create(Authority, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(12), RandomNumberGenerator.GetBytes(12));
        var certificatePath = Path.Combine(Directory, $"{name}.pem");
        var keyPath = Path.Combine(Directory, $"{name}.key");
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        using var withKey = certificate.CopyWithPrivateKey(key);
        return (certificatePath, keyPath, X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null));
    }

    /// <summary>
    /// A pool <paramref name="pool"/> speaking https2 to backends on <paramref name="ports"/> that require a
    /// client certificate (backend.test's, issued here), presenting <paramref name="client"/>, and a TLS
    /// frontend <paramref name="frontend"/> on a free loopback port serving <paramref name="served"/>.
    /// </summary>
    public static string MutualTlsPoolBehindTlsFrontend(TestCertificates certificates, string pool, string frontend,
        (string Certificate, string Key) client, (string Certificate, string Key) served, params int[] ports) => $$"""
        balancer.pools.{{pool}} {
          protocol = https2
          tls { ca = "{{certificates.AuthorityFile}}", server-name = backend.test, certificate = "{{client.Certificate}}", key = "{{client.Key}}" }
          backends { {{string.Join(", ", ports.Select((port, i) => $"{(char)('a' + i)} = \"127.0.0.1:{port}\""))}} }
        }
        balancer.frontends.{{frontend}} {
          bind = "127.0.0.1:0"
          pool = {{pool}}
          tls { certificate = "{{served.Certificate}}", key = "{{served.Key}}" }
        }
        """;

    /// <summary>A client handler that trusts what this CA issued, and nothing else.</summary>
    public SocketsHttpHandler TrustingHandler() => new()
    {
        UseProxy = false,
        SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && Balancer.Configuration.Certificates.IssuedBy(new X509Certificate2(certificate), Authority) },
    };

    public void Dispose()
    {
        _authorityKey.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
