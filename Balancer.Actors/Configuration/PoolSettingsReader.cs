using System.Collections.Immutable;
using Akka.Configuration;
using Balancer.Routing.LoadBalancing;

namespace Balancer.Configuration;

/// <summary>Reads and checks one <c>balancer.pools.NAME</c> with its affinity, health checks, passive health and backends.</summary>
internal static class PoolSettingsReader
{
    internal static PoolSettings ReadPool(string name, SettingsReader section, Config userSection, Config poolDefaults, Config backendDefaults, int defaultWeight)
    {
        section.RejectUnknownKeys(SettingsReader.KeysOf(poolDefaults), userSection);

        var algorithm = section.String("algorithm");
        if (!Algorithms.All.Contains(algorithm))
        {
            section.Problem("algorithm", $"unknown algorithm \"{algorithm}\" (expected one of {string.Join(" | ", Algorithms.All)})");
            algorithm = Algorithms.RoundRobin;
        }

        var protocol = ReadProtocol(section);
        var hashKey = section.Parsed<HashKey>("hash-key", HashKey.TryParse, "source-ip | header:NAME | cookie:NAME | path");

        var affinity = ReadAffinity(section.Section("affinity"), SettingsReader.Sub(userSection, "affinity"), poolDefaults.GetConfig("affinity"));
        var health = ReadHealthCheck(section.Section("health-check"), SettingsReader.Sub(userSection, "health-check"), poolDefaults.GetConfig("health-check"));
        var passive = ReadPassive(section.Section("passive"), SettingsReader.Sub(userSection, "passive"), poolDefaults.GetConfig("passive"));

        var backends = ImmutableArray.CreateBuilder<BackendSettings>();
        var backendsSection = section.Section("backends");
        foreach (var backendName in section.ObjectKeys("backends"))
        {
            if (backendsSection.IsRemoved(backendName))
            {
                // NAME = null removes a backend an included file defined.
                continue;
            }
            SettingsReader.CheckName(backendsSection, backendName, "backend");
            var backend = ReadBackend(backendName, backendsSection, backendDefaults, defaultWeight);
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
            section.Percent("panic-threshold"),
            section.Duration("slow-start", allowZero: true),
            section.Int("retries", 0, 100),
            section.Duration("connect-timeout"),
            section.Duration("request-timeout"),
            backends.ToImmutable(),
            defaultWeight,
            protocol,
            ReadBackendTls(section.Section("tls"), SettingsReader.Sub(userSection, "tls"), poolDefaults.GetConfig("tls"), protocol),
            ReadRetry(section.Section("retry"), SettingsReader.Sub(userSection, "retry"), poolDefaults.GetConfig("retry")),
            ReadGrpcCodes(section.Section("passive"), "grpc-failure-codes"));
    }

    internal static BackendProtocol ReadProtocol(SettingsReader section) => section.Choice("protocol", "http1", "http2", "https", "https2") switch
    {
        "http2" => BackendProtocol.Http2,
        "https" => BackendProtocol.Https,
        "https2" => BackendProtocol.Https2,
        _ => BackendProtocol.Http1,
    };

    internal static BackendTlsSettings? ReadBackendTls(SettingsReader tls, Config user, Config defaults, BackendProtocol protocol)
    {
        tls.RejectUnknownKeys(SettingsReader.KeysOf(defaults), user);
        var authority = tls.String("ca");
        var verify = tls.Bool("verify");
        var serverName = tls.String("server-name");
        var certificate = tls.String("certificate");
        var key = tls.String("key");
        var passwordEnv = tls.String("password-env");
        if (protocol is BackendProtocol.Http1 or BackendProtocol.Http2)
        {
            if (!user.IsEmpty)
            {
                tls.Problem("ca", "backend TLS settings need protocol = https or https2");
            }
            return null;
        }
        if (authority.Length > 0)
        {
            try
            {
                var collection = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
                collection.ImportFromPemFile(authority);
                if (collection.Count == 0)
                {
                    tls.Problem("ca", $"{authority}: no PEM certificate in it");
                }
                foreach (var certificateInFile in collection)
                {
                    certificateInFile.Dispose();
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
            {
                tls.Problem("ca", $"cannot read {authority}: {e.Message}");
            }
        }
        if (serverName.Length > 0 && Uri.CheckHostName(serverName) == UriHostNameType.Unknown)
        {
            tls.Problem("server-name", $"expected a host name, got \"{serverName}\"");
        }
        CertificateFiles? client = null;
        if (certificate.Length > 0)
        {
            client = new CertificateFiles(certificate, key);
            try
            {
                using var loaded = Certificates.Load(client, passwordEnv);
                if (!loaded.HasPrivateKey)
                {
                    tls.Problem("certificate", $"{certificate}: no private key (give tls.key)");
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                tls.Problem("certificate", $"cannot read {certificate}: {e.Message}");
            }
        }
        else if (key.Length > 0)
        {
            tls.Problem("key", "needs tls.certificate as well");
        }
        return new BackendTlsSettings(authority, verify, serverName, client, passwordEnv);
    }

    internal static RetrySettings ReadRetry(SettingsReader retry, Config user, Config defaults)
    {
        retry.RejectUnknownKeys(SettingsReader.KeysOf(defaults), user);
        var statuses = ImmutableArray.CreateBuilder<int>();
        foreach (var text in retry.StringList("on-status"))
        {
            if (int.TryParse(text, out var status) && status is >= 500 and <= 599)
            {
                statuses.Add(status);
            }
            else
            {
                retry.Problem("on-status", $"expected 5xx statuses such as 502, 503, 504, got \"{text}\"");
            }
        }
        var methods = ImmutableHashSet.CreateBuilder<string>(StringComparer.Ordinal);
        foreach (var method in retry.StringList("methods"))
        {
            if (method is "POST" or "PATCH" or "CONNECT")
            {
                retry.Problem("methods", $"{method} is not idempotent: a retry could apply it twice");
            }
            else if (method.Length == 0 || method.Any(c => c is < 'A' or > 'Z'))
            {
                retry.Problem("methods", $"expected methods in capitals such as GET, got \"{method}\"");
            }
            else
            {
                methods.Add(method);
            }
        }
        return new RetrySettings(retry.Bool("on-reset"), statuses.ToImmutable(), methods.ToImmutable(),
            retry.Percent("budget"), retry.Int("min-per-second", 0, 1_000_000));
    }

    internal static GrpcStatusSet ReadGrpcCodes(SettingsReader section, string key)
    {
        var mask = 0;
        foreach (var text in section.StringList(key))
        {
            if (GrpcStatusSet.TryParseCode(text, out var code))
            {
                mask |= 1 << code;
            }
            else
            {
                section.Problem(key, $"expected gRPC status names or numbers (0-16) such as UNAVAILABLE, got \"{text}\"");
            }
        }
        return new GrpcStatusSet(mask);
    }

    internal static BackendSettings? ReadBackend(string name, SettingsReader backends, Config backendDefaults, int defaultWeight)
    {
        var value = backends.Value(name);
        EndpointAddress? address;
        var weight = defaultWeight;
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
            backend.RejectUnknownKeys(["address", .. SettingsReader.KeysOf(backendDefaults)], backends.Raw.GetConfig(name) ?? Config.Empty);
            if (!backend.Has("address"))
            {
                backend.Problem("address", "expected HOST:PORT of the backend");
                return null;
            }
            // Null when it is not a usable HOST:PORT (the problem is reported).
            address = backend.Address("address");
            weight = backend.Int("weight", BackendRules.MinWeight, BackendRules.MaxWeight);
            if (address is null)
            {
                return null;
            }
        }
        return new BackendSettings(name, address, weight);
    }

    internal static AffinitySettings ReadAffinity(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(SettingsReader.KeysOf(defaults), user);
        var modeText = section.String("mode");
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
        var write = section.Choice("write", "local", "majority") == "majority"
            ? AffinityWriteConsistency.Majority
            : AffinityWriteConsistency.Local;
        var cookieName = section.String("cookie-name");
        if (!HashKey.TrySplitNamed("c:" + cookieName, "c:", out _))
        {
            section.Problem("cookie-name", $"expected a cookie name (letters, digits, - and _), got \"{cookieName}\"");
        }
        var maxEntries = section.Int("max-entries", 1, 100_000_000);
        var automatic = (maxEntries + AffinitySettings.SessionsPerAutomaticBucket - 1) / AffinitySettings.SessionsPerAutomaticBucket;
        var buckets = section.String("buckets") == "auto" ? Math.Max(16, automatic) : section.Int("buckets", 1, 100_000);
        if (buckets > 0 && AffinitySettings.CapacityOf(maxEntries, buckets) > AffinitySettings.MaxSessionsPerBucket)
        {
            section.Problem("buckets", $"at most {AffinitySettings.MaxSessionsPerBucket} sessions a bucket fit every remoting frame, and {buckets} buckets hold up to {AffinitySettings.CapacityOf(maxEntries, buckets)} each at max-entries = {maxEntries}: set more, or auto");
        }
        return new AffinitySettings(mode, keyName, cookieName, section.Duration("ttl"), write,
            buckets, maxEntries, section.Int("new-sessions-per-client", 0, 1_000_000));
    }

    internal static HealthCheckSettings ReadHealthCheck(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(SettingsReader.KeysOf(defaults), user);
        var kind = section.Choice("kind", "http", "tcp", "none") switch
        {
            "tcp" => HealthCheckKind.Tcp,
            "none" => HealthCheckKind.None,
            _ => HealthCheckKind.Http,
        };
        var path = section.String("path");
        if (!path.StartsWith('/'))
        {
            section.Problem("path", $"expected an absolute path starting with /, got \"{path}\"");
        }
        var expectStatus = section.Parsed<StatusCodeRanges>("expect-status", StatusCodeRanges.TryParse, "status codes or ranges from 100 to 599 such as \"200-399,404\"");
        var interval = section.Duration("interval");
        var timeout = section.Duration("timeout");
        if (timeout > interval)
        {
            section.Problem("timeout", $"expected at most health-check.interval ({interval.TotalMilliseconds:0}ms), got {timeout.TotalMilliseconds:0}ms");
        }
        var placement = section.Choice("placement", "sharded", "every-node") == "every-node"
            ? ProbePlacement.EveryNode
            : ProbePlacement.Sharded;
        return new HealthCheckSettings(
            kind, path, expectStatus, section.String("expect-body"), interval, timeout,
            section.Int("rise", 1, 1000), section.Int("fall", 1, 1000),
            section.Duration("fast-interval"),
            section.Duration("down-interval"),
            section.Percent("jitter"),
            placement);
    }

    internal static PassiveHealthSettings ReadPassive(SettingsReader section, Config user, Config defaults)
    {
        section.RejectUnknownKeys(SettingsReader.KeysOf(defaults), user);
        var ejection = section.Duration("ejection");
        var maxEjection = section.Duration("max-ejection");
        if (maxEjection < ejection)
        {
            section.Problem("max-ejection", "expected at least passive.ejection");
        }
        return new PassiveHealthSettings(
            section.Int("consecutive-failures", 0, 1_000_000),
            section.Bool("count-5xx"),
            ejection,
            maxEjection,
            section.Percent("max-ejected-percent"));
    }
}
