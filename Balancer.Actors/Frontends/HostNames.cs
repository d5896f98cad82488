namespace Balancer.Frontends;

/// <summary>Matching a client's SNI name against a configured name: exact, or a "*.example.com" wildcard for one label.</summary>
internal static class HostNames
{
    public static bool Matches(string pattern, string serverName)
    {
        if (pattern.StartsWith("*.", StringComparison.Ordinal))
        {
            var dot = serverName.IndexOf('.');
            return dot > 0 && string.Equals(serverName[(dot + 1)..], pattern[2..], StringComparison.OrdinalIgnoreCase);
        }
        return string.Equals(pattern, serverName, StringComparison.OrdinalIgnoreCase);
    }
}
