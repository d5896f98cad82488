using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using Balancer.Configuration;

namespace Balancer.Security;

/// <summary>
/// Authenticated, encrypted cluster traffic (<c>balancer.node.cluster-tls</c>): Akka.Remote over
/// TLS where both ends present a certificate and each accepts only certificates issued by the
/// cluster's own CA, so a host that merely reaches the remoting port cannot join or inject state.
/// <code>var system = ActorSystem.Create("balancer", ClusterTls.Setup(config));</code>
/// </summary>
public static class ClusterTls
{
    /// <summary>The setup of an ActorSystem for <paramref name="config"/>: with mutual TLS when cluster-tls is configured.</summary>
    public static ActorSystemSetup Setup(Config config)
    {
        var settings = BalancerSettings.Create(config.WithFallback(BalancerSettings.DefaultConfig())).Node.ClusterTls;
        if (settings is null)
        {
            return ActorSystemSetup.Create(BootstrapSetup.Create().WithConfig(config));
        }
        var certificate = Certificates.Load(new CertificateFiles(settings.Certificate, settings.Key), settings.PasswordEnv);
        var authority = X509CertificateLoader.LoadCertificateFromFile(settings.Authority);
        var tls = ConfigurationFactory.ParseString("""
            akka.remote.dot-netty.tcp {
              enable-ssl = on
              ssl {
                require-mutual-authentication = on
                # Nodes are reached by IP address; what counts is the issuer, checked below.
                validate-certificate-hostname = off
              }
            }
            """).WithFallback(config);
        var ssl = new DotNettySslSetup(certificate, suppressValidation: false, requireMutualAuthentication: true, validateCertificateHostname: false,
            customValidator: (peer, _, remote, _, log) =>
            {
                if (peer is null)
                {
                    log.Warning("cluster-tls: refusing {0}: no certificate", remote);
                    return false;
                }
                if (Certificates.ClusterNodeProblem(peer, authority, settings.NodeNames) is not { } problem)
                {
                    return true;
                }
                log.Warning("cluster-tls: refusing {0}: {1}", remote, problem);
                return false;
            });
        return BootstrapSetup.Create().WithConfig(tls).And(ssl);
    }
}
