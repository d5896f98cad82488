using Akka.Configuration;

namespace Balancer.Configuration;

/// <summary>Reads and checks <c>balancer.config-source</c>.</summary>
internal static class ConfigSourceSettingsReader
{
    internal static EtcdSettings? ReadEtcd(SettingsReader configSource, Config userBalancer, Config reference)
    {
        configSource.RejectUnknownKeys(SettingsReader.KeysOf(reference.GetConfig("config-source")), userBalancer.GetConfig("config-source") ?? Config.Empty);
        var etcd = configSource.Section("etcd");
        etcd.RejectUnknownKeys(SettingsReader.KeysOf(reference.GetConfig("config-source.etcd")), userBalancer.GetConfig("config-source.etcd") ?? Config.Empty);
        var endpoints = etcd.HttpUrls("endpoints");
        var prefix = etcd.String("prefix");
        if (!prefix.StartsWith('/') || prefix.Length < 2 || prefix.EndsWith('/'))
        {
            etcd.Problem("prefix", $"expected a key prefix like \"/balancer\" (a leading slash, no trailing one), got \"{prefix}\"");
        }
        var username = etcd.String("username");
        var passwordEnv = etcd.String("password-env");
        if (username.Length > 0 && passwordEnv.Length == 0)
        {
            etcd.Problem("password-env", "username is set: name the environment variable that holds the password");
        }
        return endpoints.IsEmpty ? null : new EtcdSettings(endpoints, prefix, username, passwordEnv);
    }
}
