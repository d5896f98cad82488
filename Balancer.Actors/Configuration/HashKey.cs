namespace Balancer.Configuration;

/// <summary>What part of a request consistent-hash and maglev hash.</summary>
public enum HashKeySource
{
    /// <summary>The client's IP address.</summary>
    SourceIp,
    /// <summary>The value of a request header.</summary>
    Header,
    /// <summary>The value of a request cookie.</summary>
    Cookie,
    /// <summary>The request path.</summary>
    Path,
}

/// <summary>A parsed <c>hash-key</c>: "source-ip", "header:NAME", "cookie:NAME" or "path".</summary>
public sealed record HashKey(HashKeySource Source, string Name)
{
    /// <summary>The default key: the client's IP address.</summary>
    public static readonly HashKey SourceIp = new(HashKeySource.SourceIp, "");

    /// <summary>Parses the configuration form.</summary>
    public static bool TryParse(string text, out HashKey key)
    {
        key = SourceIp;
        switch (text)
        {
            case "source-ip":
                return true;
            case "path":
                key = new HashKey(HashKeySource.Path, "");
                return true;
        }
        if (TrySplitNamed(text, "header:", out var header))
        {
            key = new HashKey(HashKeySource.Header, header);
            return true;
        }
        if (TrySplitNamed(text, "cookie:", out var cookie))
        {
            key = new HashKey(HashKeySource.Cookie, cookie);
            return true;
        }
        return false;
    }

    internal static bool TrySplitNamed(string text, string prefix, out string name)
    {
        name = "";
        if (!text.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }
        name = text[prefix.Length..].Trim();
        return name.Length > 0 && name.All(c => c > 32 && c < 127 && c != ':' && c != ';' && c != ',' && c != '=');
    }

    /// <inheritdoc />
    public override string ToString() => Source switch
    {
        HashKeySource.SourceIp => "source-ip",
        HashKeySource.Path => "path",
        HashKeySource.Header => "header:" + Name,
        _ => "cookie:" + Name,
    };
}
