using System.Collections.Immutable;
using Akka.Configuration;

namespace Balancer.Configuration;

/// <summary>Reads and checks one <c>balancer.frontends.NAME</c>, and that no two listeners take one port.</summary>
internal static class FrontendSettingsReader
{
    internal static FrontendSettings ReadFrontend(string name, SettingsReader section, ImmutableArray<PoolSettings>.Builder pools, Config routeDefaults)
    {
        var mode = section.Choice("mode", "http", "tcp") == "tcp" ? FrontendMode.Tcp : FrontendMode.Http;
        var binds = ImmutableArray.CreateBuilder<EndpointAddress>();
        var bindTexts = section.StringList("bind");
        if (bindTexts.Count == 0)
        {
            section.Problem("bind", "expected at least one IP:PORT to listen on");
        }
        foreach (var text in bindTexts)
        {
            if (!EndpointAddress.TryParse(text, out var address, out var error, allowAnyPort: true))
            {
                section.Problem("bind", error);
                continue;
            }
            if (address.IPEndPoint is null && address.Host != "localhost")
            {
                section.Problem("bind", $"expected an IP address to listen on, got host name \"{address.Host}\"");
                continue;
            }
            if (binds.Contains(address))
            {
                section.Problem("bind", $"{address} is listed twice");
                continue;
            }
            binds.Add(address);
        }

        var pool = ReadPoolName(section, pools);

        return new FrontendSettings(
            name,
            mode,
            binds.ToImmutable(),
            pool,
            section.Bool("reuse-port"),
            section.Duration("idle-timeout"),
            section.Int("max-connections", 1, 10_000_000),
            section.Bool("preserve-host"),
            section.Choice("forwarded-headers", "append", "replace", "off") switch
            {
                "replace" => ForwardedHeadersMode.Replace,
                "off" => ForwardedHeadersMode.Off,
                _ => ForwardedHeadersMode.Append,
            },
            ReadTrustedProxies(section),
            section.Int("max-connections-per-client", 0, 10_000_000),
            section.Duration("request-headers-timeout"),
            section.Int("max-request-header-bytes", 1024, 16 * 1024 * 1024),
            section.Int("max-request-headers", 1, 10_000),
            section.Int("max-request-line-bytes", 256, 1024 * 1024),
            section.Int("min-request-body-rate", 0, int.MaxValue),
            ReadTls(section.Section("tls"), mode),
            ReadSniRoutes(section, mode, pools),
            section.Choice("protocols", "http1", "http2", "http1-and-2") switch
            {
                "http1" => HttpProtocolsSetting.Http1,
                "http2" => HttpProtocolsSetting.Http2,
                _ => HttpProtocolsSetting.Http1AndHttp2,
            },
            RouteSettingsReader.ReadRoutes(section, mode, routeDefaults, pools),
            section.Duration("tunnel-idle-timeout"),
            section.Bool("http1-fast-path"),
            section.Bool("event-loop"));
    }

    /// <summary>The <c>pool</c> a frontend or route sends to: it must be one of <paramref name="pools"/>.</summary>
    internal static string ReadPoolName(SettingsReader section, ImmutableArray<PoolSettings>.Builder pools)
    {
        var pool = section.String("pool");
        if (pool.Length == 0)
        {
            section.Problem("pool", "expected the name of a pool under balancer.pools");
        }
        else if (!pools.Any(p => p.Name == pool))
        {
            var known = pools.Count == 0 ? "no pools are defined" : "defined pools: " + string.Join(", ", pools.Select(p => p.Name));
            section.Problem("pool", $"unknown pool \"{pool}\" ({known})");
        }
        return pool;
    }

    /// <summary><c>trusted-proxies</c>: addresses ("192.0.2.7") or CIDRs ("10.0.0.0/8").</summary>
    internal static ImmutableArray<System.Net.IPNetwork> ReadTrustedProxies(SettingsReader section)
    {
        var networks = ImmutableArray.CreateBuilder<System.Net.IPNetwork>();
        foreach (var entry in section.StringList("trusted-proxies"))
        {
            if (System.Net.IPNetwork.TryParse(entry, out var network))
            {
                networks.Add(network);
            }
            else if (System.Net.IPAddress.TryParse(entry, out var address))
            {
                networks.Add(new System.Net.IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            }
            else
            {
                section.Problem("trusted-proxies", $"expected IP addresses or CIDRs such as 10.0.0.0/8, got \"{entry}\"");
            }
        }
        return networks.ToImmutable();
    }

    internal static ImmutableArray<SniRoute> ReadSniRoutes(SettingsReader section, FrontendMode mode, ImmutableArray<PoolSettings>.Builder pools)
    {
        var routes = ImmutableArray.CreateBuilder<SniRoute>();
        foreach (var text in section.StringList("sni-routes"))
        {
            var parts = text.Split('=', 2, StringSplitOptions.TrimEntries);
            if (mode != FrontendMode.Tcp)
            {
                section.Problem("sni-routes", "routing by SNI without decrypting is for tcp frontends (an http frontend terminates TLS)");
                break;
            }
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
            {
                section.Problem("sni-routes", $"expected \"SERVER-NAME=POOL\", got \"{text}\"");
                continue;
            }
            if (!pools.Any(p => p.Name == parts[1]))
            {
                section.Problem("sni-routes", $"unknown pool \"{parts[1]}\" for {parts[0]}");
                continue;
            }
            routes.Add(new SniRoute(parts[0], parts[1]));
        }
        return routes.ToImmutable();
    }

    internal static TlsSettings? ReadTls(SettingsReader tls, FrontendMode mode)
    {
        var certificate = tls.String("certificate");
        var extra = tls.StringList("sni-certificates");
        if (certificate.Length == 0)
        {
            if (extra.Count > 0)
            {
                tls.Problem("sni-certificates", "needs tls.certificate (the default certificate) as well");
            }
            return null;
        }
        if (mode == FrontendMode.Tcp)
        {
            tls.Problem("certificate", "TLS termination is for http frontends; a tcp frontend passes TLS through");
            return null;
        }
        var files = ImmutableArray.CreateBuilder<CertificateFiles>();
        files.Add(new CertificateFiles(certificate, tls.String("key")));
        foreach (var item in extra)
        {
            var parts = item.Split(',', 2, StringSplitOptions.TrimEntries);
            files.Add(new CertificateFiles(parts[0], parts.Length > 1 ? parts[1] : ""));
        }
        var passwordEnv = tls.String("password-env");
        var problems = 0;
        foreach (var file in files)
        {
            try
            {
                using var loaded = Certificates.Load(file, passwordEnv);
                if (!loaded.HasPrivateKey)
                {
                    tls.Problem(file == files[0] ? "certificate" : "sni-certificates", $"{file.Certificate}: no private key (give tls.key, or \"CERT,KEY\")");
                    problems++;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                tls.Problem(file == files[0] ? "certificate" : "sni-certificates", $"cannot read {file.Certificate}: {e.Message}");
                problems++;
            }
        }
        var hsts = tls.DurationOrOff("hsts");
        return problems > 0 ? null : new TlsSettings(files.ToImmutable(), passwordEnv, hsts);
    }

    internal static void CheckBindConflicts(BalancerSettings settings, List<ConfigProblem> problems)
    {
        var taken = new List<(EndpointAddress Address, string Owner)>();
        if (settings.Node.AdminEnabled && settings.Node.AdminBind is { } admin)
        {
            taken.Add((admin, "balancer.node.admin.bind"));
        }
        foreach (var frontend in settings.Frontends)
        {
            foreach (var bind in frontend.Bind)
            {
                foreach (var (address, owner) in taken)
                {
                    if (address.Port == bind.Port && bind.Port != 0 && Overlaps(address, bind) && owner != $"balancer.frontends.{frontend.Name}.bind")
                    {
                        problems.Add(new ConfigProblem($"balancer.frontends.{frontend.Name}.bind", $"{bind} is already bound by {owner}"));
                    }
                }
                taken.Add((bind, $"balancer.frontends.{frontend.Name}.bind"));
            }
        }
    }

    internal static bool Overlaps(EndpointAddress a, EndpointAddress b)
    {
        static bool IsAny(EndpointAddress e) => e.Host is "0.0.0.0" or "::" or "*";
        return a.Host == b.Host || IsAny(a) || IsAny(b);
    }
}
