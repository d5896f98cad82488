namespace Balancer.Management;

/// <summary>The status page served at <c>GET /</c>: one self-contained HTML file (no CDN), embedded in the assembly.</summary>
internal static class StatusPage
{
    private static readonly Lazy<string> Page = new(() =>
    {
        using var stream = typeof(StatusPage).Assembly.GetManifestResourceStream("Balancer.Management.status.html")
            ?? throw new InvalidOperationException("status.html is not embedded in Balancer.Actors");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    public static string Html => Page.Value;
}
