using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Balancer.Security;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Cluster;

/// <summary>Mutual TLS between nodes: only a certificate from the cluster CA gets a node in.</summary>
[Collection(SerialCollection.Name)]
public class ClusterTlsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("balancer-cluster-tls-").FullName;

    [Fact]
    public async Task NodeWithTheClusterCertificate_Joins_NodeWithAnotherCasCertificate_CannotJoin()
    {
        var (ca, caKey) = Authority("CN=Balancer cluster CA");
        var (rogueCa, rogueKey) = Authority("CN=Someone else's CA");
        var caFile = Path.Combine(_directory, "ca.pem");
        File.WriteAllText(caFile, ca.ExportCertificatePem());

        var systems = new List<ActorSystem>();
        try
        {
            // The members accept only the node names they were told, even from the cluster's own CA.
            const string names = "node-names = [node-a, node-b]";
            var first = Start("node-a", Leaf("node-a", ca, caKey), caFile, systems, names);
            var firstCluster = Akka.Cluster.Cluster.Get(first);
            firstCluster.Join(firstCluster.SelfAddress);
            var second = Start("node-b", Leaf("node-b", ca, caKey), caFile, systems, names);
            Akka.Cluster.Cluster.Get(second).Join(firstCluster.SelfAddress);
            await Eventually.Holds(() => Assert.Equal(2, firstCluster.State.Members.Count(m => m.Status == MemberStatus.Up)), TimeSpan.FromSeconds(20));

            // One intruder holds a certificate from its own CA, one a certificate the cluster CA
            // issued for another name, the last speaks plain TCP.
            var rogueCaFile = Path.Combine(_directory, "rogue-ca.pem");
            File.WriteAllText(rogueCaFile, rogueCa.ExportCertificatePem());
            var intruders = new[]
            {
                Start("intruder", Leaf("intruder", rogueCa, rogueKey), rogueCaFile, systems),
                Start("node-c", Leaf("node-c", ca, caKey), caFile, systems),
                ActorSystem.Create("tls-cluster", BalancerHost.ClusterOfOne),
            };
            systems.Add(intruders[2]);
            foreach (var intruder in intruders)
            {
                Akka.Cluster.Cluster.Get(intruder).Join(firstCluster.SelfAddress);
            }
            await Task.Delay(TimeSpan.FromSeconds(6));
            Assert.Equal(2, firstCluster.State.Members.Count);
            foreach (var intruder in intruders)
            {
                Assert.DoesNotContain(firstCluster.State.Members, m => m.Address.Equals(Akka.Cluster.Cluster.Get(intruder).SelfAddress));
                Assert.NotEqual(MemberStatus.Up, Akka.Cluster.Cluster.Get(intruder).SelfMember.Status);
            }
        }
        finally
        {
            await Task.WhenAll(systems.Select(s => s.Terminate().WaitAsync(TimeSpan.FromSeconds(20))));
        }
    }

    [Fact]
    public void CertificateNotFromTheCa_IsAConfigurationProblem()
    {
        var (ca, _) = Authority("CN=Balancer cluster CA");
        var (rogueCa, rogueKey) = Authority("CN=Someone else's CA");
        var caFile = Path.Combine(_directory, "ca.pem");
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        var (certificate, key) = Leaf("stray", rogueCa, rogueKey);
        Assert.False(BalancerSettings.TryCreate(ConfigurationFactory.ParseString($$"""
            balancer.node.cluster-tls { certificate = "{{certificate}}", key = "{{key}}", ca = "{{caFile}}" }
            """), out _, out var problems));
        Assert.Contains(problems, p => p.Path == "balancer.node.cluster-tls.certificate" && p.Message.Contains("is not issued by the cluster CA"));
    }

    [Fact]
    public void CertificateWithoutClientAuth_OrNamedOtherwise_IsAConfigurationProblem()
    {
        var (ca, caKey) = Authority("CN=Balancer cluster CA");
        var caFile = Path.Combine(_directory, "ca.pem");
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        var (serverOnly, serverOnlyKey) = Leaf("web-server", ca, caKey, clientAuth: false);
        Assert.False(BalancerSettings.TryCreate(ConfigurationFactory.ParseString($$"""
            balancer.node.cluster-tls { certificate = "{{serverOnly}}", key = "{{serverOnlyKey}}", ca = "{{caFile}}" }
            """), out _, out var problems));
        Assert.Contains(problems, p => p.Message.Contains("lacks the serverAuth and clientAuth extended key usages"));

        var (other, otherKey) = Leaf("node-z", ca, caKey);
        Assert.False(BalancerSettings.TryCreate(ConfigurationFactory.ParseString($$"""
            balancer.node.cluster-tls { certificate = "{{other}}", key = "{{otherKey}}", ca = "{{caFile}}", node-names = [node-a] }
            """), out _, out problems));
        Assert.Contains(problems, p => p.Message.Contains("names none of cluster-tls.node-names (node-a)"));
    }

    private static ActorSystem Start(string name, (string Certificate, string Key) files, string caFile, List<ActorSystem> systems, string extra = "")
    {
        var config = ConfigurationFactory.ParseString($$"""
            balancer.node.cluster-tls { certificate = "{{files.Certificate}}", key = "{{files.Key}}", ca = "{{caFile}}"{{(extra.Length > 0 ? ", " + extra : "")}} }
            """).WithFallback(BalancerHost.ClusterOfOne);
        var system = ActorSystem.Create("tls-cluster", ClusterTls.Setup(config));
        systems.Add(system);
        return system;
    }

    private static (X509Certificate2 Certificate, RSA Key) Authority(string subject)
    {
        var key = RSA.Create(2048);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return (request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1)), key);
    }

    private (string Certificate, string Key) Leaf(string name, X509Certificate2 authority, RSA authorityKey, bool clientAuth = true)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(clientAuth ? [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")] : [new Oid("1.3.6.1.5.5.7.3.1")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        var serial = RandomNumberGenerator.GetBytes(12);
        // CreateSelfSigned already attached the authority's key.
        _ = authorityKey;
        using var certificate = request.Create(authority, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(12), serial);
        var certificatePath = Path.Combine(_directory, $"{name}.pem");
        var keyPath = Path.Combine(_directory, $"{name}.key");
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certificatePath, keyPath);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
