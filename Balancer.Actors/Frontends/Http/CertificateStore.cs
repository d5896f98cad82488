using System.Security.Cryptography.X509Certificates;
using Akka.Event;
using Balancer.Configuration;

namespace Balancer.Frontends.Http;

/// <summary>
/// The certificates of a TLS frontend: the first is the default, the others are chosen by the
/// client's SNI name (exact or wildcard match on their DNS names). Files are checked every few
/// seconds and reloaded when they change, so a renewed certificate is served without a restart;
/// a file that cannot be read keeps the previous certificate and logs why.
/// </summary>
internal sealed class CertificateStore : IDisposable
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(2);
    private readonly TlsSettings _settings;
    private readonly ILoggingAdapter? _log;
    private readonly Timer _timer;
    private volatile Loaded[] _loaded;

    public CertificateStore(TlsSettings settings, ILoggingAdapter? log)
    {
        _settings = settings;
        _log = log;
        _loaded = settings.Certificates.Select(files => Load(files, settings.PasswordEnv)).ToArray();
        _timer = new Timer(_ => ReloadChanged(), null, CheckEvery, CheckEvery);
    }

    /// <summary>The certificate for <paramref name="serverName"/> (the SNI name), or the default one.</summary>
    public X509Certificate2 Select(string? serverName)
    {
        var loaded = _loaded;
        if (!string.IsNullOrEmpty(serverName))
        {
            foreach (var candidate in loaded)
            {
                if (candidate.Names.Any(name => HostNames.Matches(name, serverName)))
                {
                    return candidate.Certificate;
                }
            }
        }
        return loaded[0].Certificate;
    }

    private static Loaded Load(CertificateFiles files, string passwordEnv)
    {
        var certificate = Certificates.Load(files, passwordEnv);
        return new Loaded(files, certificate, NamesOf(certificate), Stamp(files));
    }

    private void ReloadChanged()
    {
        var current = _loaded;
        var next = current.ToArray();
        for (var i = 0; i < next.Length; i++)
        {
            var stamp = Stamp(next[i].Files);
            if (stamp == next[i].Stamp)
            {
                continue;
            }
            try
            {
                next[i] = Load(next[i].Files, _settings.PasswordEnv);
                _log?.Info("tls: reloaded {0} ({1}, valid until {2:u})", next[i].Files.Certificate, next[i].Certificate.Subject, next[i].Certificate.NotAfter.ToUniversalTime());
            }
            catch (Exception e)
            {
                // Half-written files are common during a renewal: keep serving the old one, try again.
                _log?.Warning("tls: cannot reload {0}: {1}; still serving the previous certificate", next[i].Files.Certificate, e.Message);
                next[i] = next[i] with { Stamp = stamp };
            }
        }
        _loaded = next;
    }

    private static (DateTime, DateTime) Stamp(CertificateFiles files) =>
        (File.GetLastWriteTimeUtc(files.Certificate), files.Key.Length > 0 ? File.GetLastWriteTimeUtc(files.Key) : default);

    private static IReadOnlyList<string> NamesOf(X509Certificate2 certificate)
    {
        var names = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                names.AddRange(san.EnumerateDnsNames());
            }
        }
        var commonName = certificate.GetNameInfo(X509NameType.DnsName, forIssuer: false);
        if (names.Count == 0 && !string.IsNullOrEmpty(commonName))
        {
            names.Add(commonName);
        }
        return names;
    }

    public void Dispose() => _timer.Dispose();

    private sealed record Loaded(CertificateFiles Files, X509Certificate2 Certificate, IReadOnlyList<string> Names, (DateTime, DateTime) Stamp);
}
