using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Balancer.Configuration;

namespace Balancer.Routing;

/// <summary>
/// How a pool reaches its backends (<c>protocol</c> and <c>tls</c>): the HTTP version requests are
/// sent with and the handler that connects, verifies the backend's certificate and presents this
/// node's. The proxy and the pool's health checks use the same.
/// </summary>
public sealed class BackendTransport
{
    private readonly X509Certificate2Collection? _authorities;
    private readonly X509Certificate2? _clientCertificate;
    private readonly BackendTlsSettings? _tls;

    /// <summary>Reads the pool's certificates (its configuration was checked: they load).</summary>
    public BackendTransport(PoolSettings pool)
    {
        Protocol = pool.Protocol;
        _tls = pool.UsesTls ? pool.Tls ?? new BackendTlsSettings("", true, "", null, "") : null;
        if (_tls is { Authority.Length: > 0 })
        {
            _authorities = new X509Certificate2Collection();
            _authorities.ImportFromPemFile(_tls.Authority);
        }
        if (_tls?.ClientCertificate is { } client)
        {
            _clientCertificate = Certificates.Load(client, _tls.PasswordEnv);
        }
        Scheme = pool.UsesTls ? "https" : "http";
        Version = pool.UsesHttp2 ? HttpVersion.Version20 : HttpVersion.Version11;
    }

    /// <summary>How long a kept-alive connection to a backend may stay unused, by HttpClient and by the HTTP/1.1 fast path alike.</summary>
    internal static readonly TimeSpan PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60);

    /// <summary>What the pool speaks.</summary>
    public BackendProtocol Protocol { get; }

    /// <summary>"http" or "https".</summary>
    public string Scheme { get; }

    /// <summary>The version requests are sent with, exactly (HTTP/2 without TLS is prior knowledge; nothing falls back).</summary>
    public Version Version { get; }

    /// <summary>Requests go with exactly <see cref="Version"/>: a backend that cannot speak it fails, visibly, rather than being spoken to otherwise.</summary>
    public HttpVersionPolicy VersionPolicy => HttpVersionPolicy.RequestVersionExact;

    /// <summary>True when backends' certificates are accepted whatever they are (<c>tls.verify = off</c>).</summary>
    public bool VerifiesNothing => _tls is { Verify: false };

    /// <summary>
    /// A handler for forwarding (<paramref name="forProbes"/> false: pooled connections, several
    /// HTTP/2 connections when one is full) or for health checks (a new connection each time, so a
    /// check sees what a new connection would).
    /// </summary>
    public SocketsHttpHandler CreateHandler(TimeSpan connectTimeout, bool forProbes)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ActivityHeadersPropagator = null,
            PooledConnectionIdleTimeout = PooledConnectionIdleTimeout,
            // A connect that times out must look like a refused one (a connection error the proxy
            // retries elsewhere), not like a slow response: the handler's own ConnectTimeout surfaces
            // as a cancellation that YARP reports as a 504.
            ConnectCallback = async (context, cancellationToken) => new System.Net.Sockets.NetworkStream(
                await BackendConnection.ConnectAsync(context.DnsEndPoint, connectTimeout, cancellationToken).ConfigureAwait(false), ownsSocket: true),
        };
        if (forProbes)
        {
            handler.PooledConnectionLifetime = TimeSpan.Zero;
        }
        if (_tls is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = Verify,
                ClientCertificates = _clientCertificate is null ? null : new X509CertificateCollection { _clientCertificate },
            };
        }
        return handler;
    }

    private bool Verify(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        var tls = _tls!;
        if (!tls.Verify)
        {
            return true;
        }
        if (certificate is not X509Certificate2 presented)
        {
            return false;
        }
        if (tls.ServerName.Length > 0)
        {
            // The certificate must name the configured name instead of the one the request was sent for.
            errors &= ~SslPolicyErrors.RemoteCertificateNameMismatch;
            if (!presented.MatchesHostname(tls.ServerName, allowWildcards: true, allowCommonName: true))
            {
                return false;
            }
        }
        else if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }
        if (_authorities is null)
        {
            return (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None;
        }
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.DisableCertificateDownloads = true;
        // A server's certificate: one the CA issued for clients only (ours, say) does not pass.
        custom.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.1"));
        if (chain is not null)
        {
            // Intermediates the backend sent along.
            foreach (var element in chain.ChainElements)
            {
                custom.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        return custom.Build(presented);
    }
}
