using System.Collections.Immutable;
using System.Reflection;
using Akka.Configuration;
using Balancer.Configuration;
using Balancer.Routing.LoadBalancing;

namespace Balancer;

/// <summary>
/// The typed form of the <c>balancer { }</c> configuration section. <see cref="Create(Config)"/>
/// validates the whole section and reports every problem at once.
/// </summary>
public sealed record BalancerSettings(
    NodeSettings Node,
    ImmutableArray<FrontendSettings> Frontends,
    ImmutableArray<PoolSettings> Pools,
    AlertSettings Alerts)
{
    private static readonly Lazy<Config> Reference = new(LoadReference);

    /// <summary>The embedded reference.conf: every key with its default.</summary>
    public static Config DefaultConfig() => Reference.Value;

    /// <summary>Reads and validates <c>balancer { }</c> from <paramref name="config"/> (reference.conf is the fallback).</summary>
    /// <exception cref="BalancerConfigException">The section has one or more problems.</exception>
    public static BalancerSettings Create(Config config)
    {
        if (!TryCreate(config, out var settings, out var problems))
        {
            throw new BalancerConfigException(problems);
        }
        return settings;
    }

    /// <summary>Reads and validates <c>balancer { }</c>; returns false with every problem found.</summary>
    public static bool TryCreate(Config config, out BalancerSettings settings, out IReadOnlyList<ConfigProblem> problems)
    {
        var found = new List<ConfigProblem>();
        settings = Read(config, found);
        problems = found;
        return found.Count == 0;
    }

    /// <summary>The pool named <paramref name="name"/>, or null.</summary>
    public PoolSettings? FindPool(string name)
    {
        foreach (var pool in Pools)
        {
            if (pool.Name == name)
            {
                return pool;
            }
        }
        return null;
    }

    private static Config LoadReference()
    {
        using var stream = typeof(BalancerSettings).Assembly.GetManifestResourceStream("Balancer.reference.conf")
            ?? throw new InvalidOperationException("reference.conf is not embedded in Balancer.Actors");
        using var reader = new StreamReader(stream);
        return ConfigurationFactory.ParseString(reader.ReadToEnd());
    }

    private static BalancerSettings Read(Config config, List<ConfigProblem> problems)
    {
        var userBalancer = config.HasPath("balancer") ? config.GetConfig("balancer") : Config.Empty;
        var reference = DefaultConfig().GetConfig("balancer");
        var root = new SettingsReader(userBalancer.WithFallback(reference), "balancer", problems);
        root.RejectUnknownKeys(KeysOf(reference), userBalancer);

        var node = ReadNode(root.Section("node"), userBalancer, reference);

        var frontendDefaults = root.Raw.GetConfig("frontend-defaults");
        var poolDefaults = root.Raw.GetConfig("pool-defaults");
        var backendDefaults = root.Raw.GetConfig("backend-defaults");

        var pools = ImmutableArray.CreateBuilder<PoolSettings>();
        foreach (var name in root.ObjectKeys("pools"))
        {
            var section = root.Section("pools").Section(name, poolDefaults);
            CheckName(root.Section("pools"), name, "pool");
            var userSection = userBalancer.GetConfig("pools." + name) ?? Config.Empty;
            pools.Add(ReadPool(name, section, userSection, poolDefaults, backendDefaults));
        }

        var frontends = ImmutableArray.CreateBuilder<FrontendSettings>();
        foreach (var name in root.ObjectKeys("frontends"))
        {
            var section = root.Section("frontends").Section(name, frontendDefaults);
            CheckName(root.Section("frontends"), name, "frontend");
            var userSection = userBalancer.GetConfig("frontends." + name) ?? Config.Empty;
            section.RejectUnknownKeys(KeysOf(frontendDefaults), userSection);
            frontends.Add(ReadFrontend(name, section, pools));
        }

        foreach (var pool in pools.Where(p => p.Affinity.Mode == AffinityMode.Cookie))
        {
            if (node.AffinityKey.Length is > 0 and < 16)
            {
                problems.Add(new ConfigProblem("balancer.node.affinity-key",
                    "cookie affinity needs a secret of at least 16 characters, the same on every node (or leave it empty: the cluster generates one)"));
            }
        }
        var settings = new BalancerSettings(node, frontends.ToImmutable(), pools.ToImmutable(), ReadAlerts(root.Section("alerts"), userBalancer, reference));
        CheckBindConflicts(settings, problems);
        return settings;
    }

    private static AlertSettings ReadAlerts(SettingsReader alerts, Config userBalancer, Config reference)
    {
        alerts.RejectUnknownKeys(KeysOf(reference.GetConfig("alerts")), userBalancer.HasPath("alerts") ? userBalancer.GetConfig("alerts") : Config.Empty);
        var webhooks = ImmutableArray.CreateBuilder<Uri>();
        foreach (var url in alerts.StringList("webhooks"))
        {
            if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            {
                webhooks.Add(uri);
            }
            else
            {
                alerts.Problem("webhooks", $"\"{url}\" is not an absolute http:// or https:// URL");
            }
        }
        return new AlertSettings(
            webhooks.ToImmutable(),
            alerts.Duration("timeout", TimeSpan.FromSeconds(5)),
            alerts.Int("max-attempts", 5, 1, 100),
            alerts.Int("queue-limit", 1000, 1, 1_000_000));
    }

    private static NodeSettings ReadNode(SettingsReader node, Config userBalancer, Config reference)
    {
        var userNode = userBalancer.HasPath("node") ? userBalancer.GetConfig("node") : Config.Empty;
        node.RejectUnknownKeys(KeysOf(reference.GetConfig("node")), userNode);
        var mode = node.Choice("mode", "active-active", "active-active", "active-passive") == "active-passive"
            ? NodeMode.ActivePassive
            : NodeMode.ActiveActive;
        var admin = node.Section("admin");
        var adminBind = ReadAddress(admin, "bind", allowAnyPort: true) ?? new EndpointAddress("127.0.0.1", 9110);
        var hooks = node.Section("hooks");
        return new NodeSettings(
            mode,
            node.String("role"),
            admin.Bool("enabled", false),
            adminBind,
            admin.String("token"),
            hooks.String("on-active"),
            hooks.String("on-passive"),
            node.Bool("start-frontends", true),
            node.Duration("frontend-start-timeout", TimeSpan.FromSeconds(30)),
            node.String("data-dir", "data"),
            node.Int("probe-shards", 30, 1, 10_000),
            node.Duration("write-timeout", TimeSpan.FromSeconds(3)),
            node.String("affinity-key"),
            ReadClusterTls(node.Section("cluster-tls")));
    }

    private static ClusterTlsSettings? ReadClusterTls(SettingsReader tls)
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
        var settings = new ClusterTlsSettings(certificate, tls.String("key"), authority, tls.String("password-env"));
        try
        {
            using var loaded = global::Balancer.Frontends.Http.CertificateStore.Read(new CertificateFiles(certificate, settings.Key), settings.PasswordEnv);
            using var ca = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(authority);
            if (!loaded.HasPrivateKey)
            {
                tls.Problem("certificate", $"{certificate}: no private key (give cluster-tls.key)");
                return null;
            }
            if (!Security.ClusterTls.IssuedBy(loaded, ca))
            {
                tls.Problem("certificate", $"{certificate} is not issued by the cluster CA {authority}: other nodes would refuse it");
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

    private static FrontendSettings ReadFrontend(string name, SettingsReader section, ImmutableArray<PoolSettings>.Builder pools)
    {
        var mode = section.Choice("mode", "http", "http", "tcp") == "tcp" ? FrontendMode.Tcp : FrontendMode.Http;
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

        return new FrontendSettings(
            name,
            mode,
            binds.ToImmutable(),
            pool,
            section.Bool("reuse-port", false),
            section.Duration("idle-timeout", TimeSpan.FromMinutes(5)),
            section.Int("max-connections", 10000, 1, 10_000_000),
            section.Bool("preserve-host", true),
            section.Bool("forwarded-headers", true),
            section.Int("max-connections-per-client", 256, 0, 10_000_000),
            section.Duration("request-headers-timeout", TimeSpan.FromSeconds(10)),
            section.Int("max-request-header-bytes", 32 * 1024, 1024, 16 * 1024 * 1024),
            section.Int("max-request-headers", 100, 1, 10_000),
            section.Int("max-request-line-bytes", 8 * 1024, 256, 1024 * 1024),
            section.Int("min-request-body-rate", 240, 0, int.MaxValue),
            ReadTls(section.Section("tls"), mode),
            ReadSniRoutes(section, mode, pools));
    }

    private static ImmutableArray<SniRoute> ReadSniRoutes(SettingsReader section, FrontendMode mode, ImmutableArray<PoolSettings>.Builder pools)
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

    private static TlsSettings? ReadTls(SettingsReader tls, FrontendMode mode)
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
                using var loaded = global::Balancer.Frontends.Http.CertificateStore.Read(file, passwordEnv);
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
        var hstsText = tls.String("hsts", "off");
        TimeSpan? hsts = hstsText is "off" or "" ? null : tls.Duration("hsts", TimeSpan.Zero);
        return problems > 0 ? null : new TlsSettings(files.ToImmutable(), passwordEnv, hsts);
    }

    private static PoolSettings ReadPool(string name, SettingsReader section, Config userSection, Config poolDefaults, Config backendDefaults)
    {
        section.RejectUnknownKeys(KeysOf(poolDefaults), userSection);

        var algorithm = section.String("algorithm", Algorithms.RoundRobin);
        if (!Algorithms.All.Contains(algorithm))
        {
            section.Problem("algorithm", $"unknown algorithm \"{algorithm}\" (expected one of {string.Join(" | ", Algorithms.All)})");
            algorithm = Algorithms.RoundRobin;
        }

        var hashKeyText = section.String("hash-key", "source-ip");
        if (!HashKey.TryParse(hashKeyText, out var hashKey))
        {
            section.Problem("hash-key", $"expected source-ip | header:NAME | cookie:NAME | path, got \"{hashKeyText}\"");
        }

        var affinity = ReadAffinity(section.Section("affinity"), Sub(userSection, "affinity"), poolDefaults.GetConfig("affinity"));
        var health = ReadHealthCheck(section.Section("health-check"), Sub(userSection, "health-check"), poolDefaults.GetConfig("health-check"));
        var passive = ReadPassive(section.Section("passive"), Sub(userSection, "passive"), poolDefaults.GetConfig("passive"));

        var backends = ImmutableArray.CreateBuilder<BackendSettings>();
        var backendsSection = section.Section("backends");
        foreach (var backendName in section.ObjectKeys("backends"))
        {
            if (!backendsSection.Has(backendName) || backendsSection.Value(backendName) is { } removed && removed.IsString() && removed.GetString() is null)
            {
                // NAME = null removes a backend an included file defined.
                continue;
            }
            CheckName(backendsSection, backendName, "backend");
            var backend = ReadBackend(backendName, backendsSection, backendDefaults);
            if (backend is not null)
            {
                backends.Add(backend);
            }
        }

        return new PoolSettings(
            name,
            algorithm,
            hashKey,
            affinity,
            health,
            passive,
            section.Percent("panic-threshold", 0.5),
            section.Duration("slow-start", TimeSpan.FromSeconds(10), allowZero: true),
            section.Int("retries", 2, 0, 100),
            section.Duration("connect-timeout", TimeSpan.FromSeconds(2)),
            section.Duration("request-timeout", TimeSpan.FromSeconds(100)),
            backends.ToImmutable());
    }

    private static BackendSettings? ReadBackend(string name, SettingsReader backends, Config backendDefaults)
    {
        var value = backends.Value(name);
        EndpointAddress? address;
        var weight = backendDefaults.GetInt("weight", 100);
        if (value is not null && value.IsString())
        {
            if (!EndpointAddress.TryParse(value.GetString(), out address, out var error))
            {
                backends.Problem(name, error);
                return null;
            }
        }
        else
        {
            var backend = backends.Section(name, backendDefaults);
            backend.RejectUnknownKeys(["address", .. KeysOf(backendDefaults)], backends.Raw.GetConfig(name) ?? Config.Empty);
            if (!backend.Has("address"))
            {
                backend.Problem("address", "expected HOST:PORT of the backend");
                return null;
            }
            address = ReadAddress(backend, "address");
            weight = backend.Int("weight", weight, 0, 10000);
            if (address is null)
            {
                return null;
            }
        }
        return new BackendSettings(name, address, weight);
    }

    private static AffinitySettings ReadAffinity(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(KeysOf(defaults), user);
        var modeText = section.String("mode", "none");
        var mode = AffinityMode.None;
        var keyName = "";
        switch (modeText)
        {
            case "none":
                break;
            case "cookie":
                mode = AffinityMode.Cookie;
                break;
            case "source-ip":
                mode = AffinityMode.SourceIp;
                break;
            default:
                if (HashKey.TrySplitNamed(modeText, "learn-cookie:", out keyName))
                {
                    mode = AffinityMode.LearnCookie;
                }
                else if (HashKey.TrySplitNamed(modeText, "header:", out keyName))
                {
                    mode = AffinityMode.Header;
                }
                else
                {
                    section.Problem("mode", $"expected none | cookie | learn-cookie:NAME | header:NAME | source-ip, got \"{modeText}\"");
                }
                break;
        }
        var write = section.Choice("write", "local", "local", "majority") == "majority"
            ? AffinityWriteConsistency.Majority
            : AffinityWriteConsistency.Local;
        var cookieName = section.String("cookie-name", "BALANCER");
        if (!HashKey.TrySplitNamed("c:" + cookieName, "c:", out _))
        {
            section.Problem("cookie-name", $"expected a cookie name (letters, digits, - and _), got \"{cookieName}\"");
        }
        return new AffinitySettings(mode, keyName, cookieName, section.Duration("ttl", TimeSpan.FromMinutes(30)), write,
            section.Int("buckets", 64, 1, 4096), section.Int("max-entries", 1_000_000, 1, 100_000_000));
    }

    private static HealthCheckSettings ReadHealthCheck(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(KeysOf(defaults), user);
        var kind = section.Choice("kind", "http", "http", "tcp", "none") switch
        {
            "tcp" => HealthCheckKind.Tcp,
            "none" => HealthCheckKind.None,
            _ => HealthCheckKind.Http,
        };
        var path = section.String("path", "/healthz");
        if (!path.StartsWith('/'))
        {
            section.Problem("path", $"expected an absolute path starting with /, got \"{path}\"");
        }
        var statusText = section.String("expect-status", "200-399");
        if (!StatusCodeRanges.TryParse(statusText, out var expectStatus))
        {
            section.Problem("expect-status", $"expected status codes or ranges from 100 to 599 such as \"200-399,404\", got \"{statusText}\"");
            StatusCodeRanges.TryParse("200-399", out expectStatus);
        }
        var interval = section.Duration("interval", TimeSpan.FromSeconds(1));
        var timeout = section.Duration("timeout", TimeSpan.FromMilliseconds(500));
        if (timeout > interval)
        {
            section.Problem("timeout", $"expected at most health-check.interval ({interval.TotalMilliseconds:0}ms), got {timeout.TotalMilliseconds:0}ms");
        }
        var placement = section.Choice("placement", "sharded", "sharded", "every-node") == "every-node"
            ? ProbePlacement.EveryNode
            : ProbePlacement.Sharded;
        return new HealthCheckSettings(
            kind, path, expectStatus, section.String("expect-body"), interval, timeout,
            section.Int("rise", 2, 1, 1000), section.Int("fall", 2, 1, 1000),
            section.Duration("fast-interval", TimeSpan.FromMilliseconds(250)),
            section.Duration("down-interval", TimeSpan.FromSeconds(2)),
            section.Percent("jitter", 0.1),
            placement);
    }

    private static PassiveHealthSettings ReadPassive(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(KeysOf(defaults), user);
        var ejection = section.Duration("ejection", TimeSpan.FromSeconds(30));
        var maxEjection = section.Duration("max-ejection", TimeSpan.FromMinutes(5));
        if (maxEjection < ejection)
        {
            section.Problem("max-ejection", "expected at least passive.ejection");
        }
        return new PassiveHealthSettings(
            section.Int("consecutive-failures", 5, 0, 1_000_000),
            section.Bool("count-5xx", true),
            ejection,
            maxEjection,
            section.Percent("max-ejected-percent", 0.5));
    }

    private static EndpointAddress? ReadAddress(SettingsReader section, string key, bool allowAnyPort = false)
    {
        var text = section.String(key);
        if (!EndpointAddress.TryParse(text, out var address, out var error, allowAnyPort))
        {
            section.Problem(key, error);
            return null;
        }
        return address;
    }

    private static void CheckName(SettingsReader parent, string name, string what)
    {
        if (name.Length == 0 || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            parent.Problem(name, $"a {what} name uses letters, digits, - and _ (at most 64)");
        }
    }

    private static void CheckBindConflicts(BalancerSettings settings, List<ConfigProblem> problems)
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

    private static bool Overlaps(EndpointAddress a, EndpointAddress b)
    {
        static bool IsAny(EndpointAddress e) => e.Host is "0.0.0.0" or "::" or "*";
        return a.Host == b.Host || IsAny(a) || IsAny(b);
    }

    private static Config Sub(Config config, string key) => config.HasPath(key) ? config.GetConfig(key) : Config.Empty;

    private static IReadOnlyCollection<string> KeysOf(Config section) =>
        section.IsEmpty || !section.Root.IsObject() ? Array.Empty<string>() : section.Root.GetObject().Items.Keys.ToHashSet();

    /// <summary>The version string of this assembly, for logs and the CLI.</summary>
    public static string Version =>
        typeof(BalancerSettings).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
}
