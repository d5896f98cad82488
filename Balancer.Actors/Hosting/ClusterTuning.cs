using Akka.Configuration;

namespace Balancer.Hosting;

/// <summary>
/// Balancer's recommended Akka settings for a balancer tier (cluster-tuning.conf, embedded): a
/// frame that fits replicated sessions, failure detection in seconds, split-brain resolution by
/// keep-majority, quick join retries and quick probe hand-over. The <c>balancer</c> executable runs
/// with them; <c>WithBalancer</c> adds them below the host's own settings unless told not to.
/// </summary>
public static class ClusterTuning
{
    private static readonly Lazy<Config> Tuning = new(() => ConfigurationFactory.ParseString(EmbeddedFile.Read("Balancer.cluster-tuning.conf")));

    /// <summary>The settings, as configuration to fall back on.</summary>
    public static Config Config => Tuning.Value;
}
