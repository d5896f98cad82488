namespace Balancer;

/// <summary>The text files Balancer.Actors carries inside itself (reference.conf, cluster-tuning.conf, the status page).</summary>
internal static class EmbeddedFile
{
    /// <summary>The text of the resource embedded as <paramref name="logicalName"/>.</summary>
    public static string Read(string logicalName)
    {
        using var stream = typeof(EmbeddedFile).Assembly.GetManifestResourceStream(logicalName)
            ?? throw new InvalidOperationException($"{logicalName} is not embedded in Balancer.Actors");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
