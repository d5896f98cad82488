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

        var hashKey = section.Parsed<HashKey>("hash-key", HashKey.TryParse, "source-ip | header:NAME | cookie:NAME | path");

        var affinity = ReadAffinity(section.Section("affinity"), SettingsReader.Sub(userSection, "affinity"), poolDefaults.GetConfig("affinity"));
        var health = ReadHealthCheck(section.Section("health-check"), SettingsReader.Sub(userSection, "health-check"), poolDefaults.GetConfig("health-check"));
        var passive = ReadPassive(section.Section("passive"), SettingsReader.Sub(userSection, "passive"), poolDefaults.GetConfig("passive"));

        var backends = ImmutableArray.CreateBuilder<BackendSettings>();
        var backendsSection = section.Section("backends");
        foreach (var backendName in section.ObjectKeys("backends"))
        {
            if (!backendsSection.Has(backendName) || backendsSection.Value(backendName) is { } removed && removed.IsString() && removed.GetString() is null)
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
            defaultWeight);
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
