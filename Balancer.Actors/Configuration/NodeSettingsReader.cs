using System.Collections.Immutable;
using Akka.Configuration;

namespace Balancer.Configuration;

/// <summary>Reads and checks <c>balancer.node</c>, including the certificates of cluster TLS.</summary>
internal static class NodeSettingsReader
{
    internal static NodeSettings ReadNode(SettingsReader node, Config userBalancer, Config reference)
    {
        var userNode = userBalancer.HasPath("node") ? userBalancer.GetConfig("node") : Config.Empty;
        node.RejectUnknownKeys(SettingsReader.KeysOf(reference.GetConfig("node")), userNode);
        var mode = node.Choice("mode", "active-active", "active-passive") == "active-passive"
            ? NodeMode.ActivePassive
            : NodeMode.ActiveActive;
        var admin = node.Section("admin");
        var adminBind = admin.Address("bind", allowAnyPort: true);
        var hooks = node.Section("hooks");
        return new NodeSettings(
            mode,
            node.String("role"),
            admin.Bool("enabled"),
            adminBind,
            admin.String("token"),
            admin.StringList("allowed-hosts"),
            hooks.String("on-active"),
            hooks.String("on-passive"),
            node.Bool("start-frontends"),
            node.Duration("frontend-start-timeout"),
            node.Duration("drain-timeout", allowZero: true),
            node.String("data-dir"),
            node.Int("probe-shards", 1, 10_000),
            node.Duration("write-timeout"),
            node.Duration("read-timeout"),
            node.String("affinity-key"),
            ReadClusterTls(node.Section("cluster-tls")),
            node.Bool("down-self-when-stalled"),
            node.Bool("watch-config"));
    }

    internal static ClusterTlsSettings? ReadClusterTls(SettingsReader tls)
    {
        var certificate = tls.String("certificate");
        var authority = tls.String("ca");
        if (certificate.Length == 0 && authority.Length == 0)
        {
            return null;
        }
        if (certificate.Length == 0 || authority.Length == 0)
        {
            tls.Problem(certificate.Length == 0 ? "certificate" : "ca", "cluster-tls needs both this node's certificate and the cluster CA");
            return null;
        }
        var settings = new ClusterTlsSettings(certificate, tls.String("key"), authority, tls.String("password-env"), tls.StringList("node-names"));
        try
        {
            using var loaded = Certificates.Load(new CertificateFiles(certificate, settings.Key), settings.PasswordEnv);
            using var ca = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(authority);
            if (!loaded.HasPrivateKey)
            {
                tls.Problem("certificate", $"{certificate}: no private key (give cluster-tls.key)");
                return null;
            }
            if (!Certificates.IssuedBy(loaded, ca))
            {
                tls.Problem("certificate", $"{certificate} is not issued by the cluster CA {authority}: other nodes would refuse it");
                return null;
            }
            if (Certificates.ClusterNodeProblem(loaded, ca, settings.NodeNames) is { } problem)
            {
                tls.Problem("certificate", $"{certificate}: {problem}: other nodes would refuse it");
                return null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            tls.Problem("certificate", $"cannot read {certificate} or {authority}: {e.Message}");
            return null;
        }
        return settings;
    }
}
