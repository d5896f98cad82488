using System.Security.Cryptography.X509Certificates;

namespace Balancer.Configuration;

/// <summary>
/// Reading and checking the certificate files a configuration names: for checking the configuration
/// (every file readable, with its key, issued by the cluster CA) and for serving with them alike.
/// </summary>
public static class Certificates
{
    /// <summary>Loads a PEM certificate with its key (in the same file or <see cref="CertificateFiles.Key"/>) or a PFX.</summary>
    /// <param name="files">The certificate file and its key file.</param>
    /// <param name="passwordEnv">The environment variable holding the password of an encrypted key or PFX (never the password itself).</param>
    public static X509Certificate2 Load(CertificateFiles files, string passwordEnv)
    {
        var password = passwordEnv.Length > 0 ? Environment.GetEnvironmentVariable(passwordEnv) : null;
        var extension = Path.GetExtension(files.Certificate).ToLowerInvariant();
        if (extension is ".pfx" or ".p12")
        {
            return X509CertificateLoader.LoadPkcs12FromFile(files.Certificate, password);
        }
        var keyFile = files.Key.Length > 0 ? files.Key : files.Certificate;
        using var pem = string.IsNullOrEmpty(password)
            ? X509Certificate2.CreateFromPemFile(files.Certificate, keyFile)
            : X509Certificate2.CreateFromEncryptedPemFile(files.Certificate, password, keyFile);
        // Re-imported so the private key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>True when <paramref name="certificate"/> chains to <paramref name="authority"/> (and only to it) and is valid now.</summary>
    public static bool IssuedBy(X509Certificate2 certificate, X509Certificate2 authority)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        // A peer's certificate must not make this node fetch anything (its AIA URLs point where the peer likes).
        chain.ChainPolicy.DisableCertificateDownloads = true;
        return chain.Build(certificate);
    }

    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// Why <paramref name="certificate"/> may not be a cluster node's, or null when it may: issued by
    /// <paramref name="authority"/>, with the serverAuth and clientAuth extended key usages (a node
    /// both accepts and opens connections), and, when <paramref name="nodeNames"/> is not empty,
    /// naming one of them (its CN or a DNS name).
    /// </summary>
    public static string? ClusterNodeProblem(X509Certificate2 certificate, X509Certificate2 authority, IReadOnlyCollection<string> nodeNames)
    {
        if (!IssuedBy(certificate, authority))
        {
            return $"certificate {certificate.Subject} is not issued by the cluster CA {authority.Subject}";
        }
        var usages = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>()
            .SelectMany(e => e.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>())
            .Select(o => o.Value)
            .ToHashSet();
        if (!usages.Contains(ServerAuth) || !usages.Contains(ClientAuth))
        {
            return $"certificate {certificate.Subject} lacks the serverAuth and clientAuth extended key usages a cluster node needs";
        }
        if (nodeNames.Count > 0)
        {
            var names = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>().SelectMany(e => e.EnumerateDnsNames())
                .Append(certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false));
            if (!names.Any(n => nodeNames.Contains(n, StringComparer.OrdinalIgnoreCase)))
            {
                return $"certificate {certificate.Subject} names none of cluster-tls.node-names ({string.Join(", ", nodeNames)})";
            }
        }
        return null;
    }
}
