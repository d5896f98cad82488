using System.Text.RegularExpressions;
using Akka.Configuration;
using Balancer.Tests.Node;

namespace Balancer.Tests.Configuration;

/// <summary>The README's configuration reference is checked against reference.conf, so the two cannot drift apart.</summary>
public class ReadmeConfigurationTests
{
    private static readonly string Readme = File.ReadAllText(Path.Combine(CommandLineTests.RepositoryRoot(), "README.md"));

    [Fact]
    public void EveryBalancerKeyTheReadmeNames_ExistsInReferenceConf()
    {
        var reference = BalancerSettings.DefaultConfig();
        // A key quoted in an "unknown key" error the README shows is misspelt on purpose.
        var keys = Regex.Matches(Readme, @"\bbalancer(?>(?:\.[a-z0-9\-]+)+)(?!: unknown key)").Select(m => m.Value.TrimEnd('.')).Where(k => k != "balancer.conf").Distinct().ToList();
        Assert.True(keys.Count > 10, $"found only {keys.Count} keys");
        var missing = keys.Select(ReferencePath).Where(path => path is not null && !reference.HasPath(path)).ToList();
        Assert.True(missing.Count == 0, "README names keys reference.conf does not have: " + string.Join(", ", missing));
    }

    [Fact]
    public void EveryHoconExampleInTheReadme_IsAValidConfiguration()
    {
        var blocks = Regex.Matches(Readme, "```hocon\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(blocks);
        foreach (var block in blocks)
        {
            var valid = BalancerSettings.TryCreate(ConfigurationFactory.ParseString(block), out _, out var problems);
            Assert.True(valid, "README example has problems: " + string.Join("; ", problems));
        }
    }

    /// <summary>balancer.pools.app.x → balancer.pool-defaults.x; frontends and backends likewise; null for paths that name an instance only.</summary>
    private static string? ReferencePath(string key)
    {
        var parts = key.Split('.').ToList();
        if (parts.Count >= 3 && parts[1] is "pools" or "frontends")
        {
            var defaults = parts[1] == "pools" ? "pool-defaults" : "frontend-defaults";
            var rest = parts.Skip(3).ToList();
            if (rest.Count == 0)
            {
                return null;
            }
            if (parts[1] == "pools" && rest[0] == "backends")
            {
                // backends.NAME(.weight|.address): per-backend keys live in backend-defaults (address is required, not defaulted).
                return rest.Count >= 3 && rest[2] != "address" ? "balancer.backend-defaults." + string.Join('.', rest.Skip(2)) : null;
            }
            return $"balancer.{defaults}.{string.Join('.', rest)}";
        }
        return key;
    }
}
