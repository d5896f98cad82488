using System.Collections;
using System.Collections.Immutable;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Balancer.Configuration;

/// <summary>
/// What a new configuration changes in the running one, pool by pool and frontend by frontend, so
/// that a reload touches only what changed: an unchanged frontend keeps its listeners and
/// connections, an unchanged pool its snapshot, probes and sessions.
/// </summary>
public sealed record ConfigurationChange(
    ImmutableArray<PoolSettings> PoolsAdded,
    ImmutableArray<string> PoolsRemoved,
    ImmutableArray<PoolChange> PoolsChanged,
    ImmutableArray<FrontendSettings> FrontendsAdded,
    ImmutableArray<string> FrontendsRemoved,
    ImmutableArray<FrontendChange> FrontendsChanged,
    ImmutableArray<string> NeedRestart)
{
    /// <summary>
    /// A frontend's settings that take effect on the running listeners, for the next request or
    /// connection; any other difference means opening the frontend again.
    /// </summary>
    internal static readonly IReadOnlySet<string> FrontendSettingsAppliedInPlace = new HashSet<string>(StringComparer.Ordinal)
    {
        nameof(FrontendSettings.Pool), nameof(FrontendSettings.Routes), nameof(FrontendSettings.PreserveHost),
        nameof(FrontendSettings.ForwardedHeaders), nameof(FrontendSettings.TrustedProxies), nameof(FrontendSettings.SniRoutes),
        nameof(FrontendSettings.TunnelIdleTimeout),
    };

    /// <summary>True when nothing differs that a reload applies.</summary>
    public bool IsEmpty => PoolsAdded.IsEmpty && PoolsRemoved.IsEmpty && PoolsChanged.IsEmpty
        && FrontendsAdded.IsEmpty && FrontendsRemoved.IsEmpty && FrontendsChanged.IsEmpty;

    /// <summary>What <paramref name="next"/> changes in <paramref name="running"/>.</summary>
    public static ConfigurationChange Between(BalancerSettings running, BalancerSettings next)
    {
        var poolsChanged = ImmutableArray.CreateBuilder<PoolChange>();
        foreach (var pool in next.Pools)
        {
            if (running.FindPool(pool.Name) is { } old && PoolChange.Of(old, pool) is { } change)
            {
                poolsChanged.Add(change);
            }
        }
        var frontendsChanged = ImmutableArray.CreateBuilder<FrontendChange>();
        foreach (var frontend in next.Frontends)
        {
            if (running.Frontends.FirstOrDefault(f => f.Name == frontend.Name) is { } old && !SettingsComparer.Same(old, frontend))
            {
                var differing = SettingsComparer.Differing(old, frontend);
                frontendsChanged.Add(new FrontendChange(frontend, differing, differing.All(FrontendSettingsAppliedInPlace.Contains)));
            }
        }
        var needRestart = ImmutableArray.CreateBuilder<string>();
        foreach (var property in SettingsComparer.Differing(running.Node, next.Node))
        {
            needRestart.Add("balancer.node." + SettingsComparer.KeyName(property));
        }
        if (!SettingsComparer.Same(running.Alerts, next.Alerts))
        {
            needRestart.Add("balancer.alerts");
        }
        if (!SettingsComparer.Same(running.Telemetry, next.Telemetry))
        {
            needRestart.Add("balancer.telemetry");
        }
        if (!SettingsComparer.Same(running.Etcd, next.Etcd))
        {
            needRestart.Add("balancer.config-source");
        }
        return new ConfigurationChange(
            [.. next.Pools.Where(p => running.FindPool(p.Name) is null)],
            [.. running.Pools.Where(p => next.FindPool(p.Name) is null).Select(p => p.Name)],
            poolsChanged.ToImmutable(),
            [.. next.Frontends.Where(f => running.Frontends.All(r => r.Name != f.Name))],
            [.. running.Frontends.Where(f => next.Frontends.All(n => n.Name != f.Name)).Select(f => f.Name)],
            frontendsChanged.ToImmutable(),
            needRestart.ToImmutable());
    }

    /// <summary>One line per change, for the log, the reload's answer and the event feed.</summary>
    public IReadOnlyList<string> Describe()
    {
        var lines = new List<string>();
        lines.AddRange(PoolsAdded.Select(p => $"pool {p.Name} added ({p.Backends.Length} backends, {p.Algorithm})"));
        lines.AddRange(PoolsChanged.Select(p => $"pool {p.Settings.Name} changed: {string.Join(", ", p.Differing.Select(SettingsComparer.KeyName))}"));
        lines.AddRange(PoolsRemoved.Select(p => $"pool {p} removed"));
        lines.AddRange(FrontendsAdded.Select(f => $"frontend {f.Name} added ({string.Join(", ", f.Bind)} -> pool {f.Pool})"));
        lines.AddRange(FrontendsChanged.Select(f => $"frontend {f.Settings.Name} changed: {string.Join(", ", f.Differing.Select(SettingsComparer.KeyName))}{(f.InPlace ? "" : " (opened again)")}"));
        lines.AddRange(FrontendsRemoved.Select(f => $"frontend {f} removed"));
        lines.AddRange(NeedRestart.Select(k => $"{k} changed: takes effect when the node starts again"));
        return lines;
    }
}

/// <summary>A pool whose settings differ: which parts, so that only what depends on them is rebuilt.</summary>
public sealed record PoolChange(PoolSettings Settings, ImmutableArray<string> Differing)
{
    /// <summary>How the pool reaches its backends changed: new connections use a new handler.</summary>
    public bool TransportChanged => Differing.Any(d => d is nameof(PoolSettings.Protocol) or nameof(PoolSettings.Tls) or nameof(PoolSettings.ConnectTimeout));

    /// <summary>Session affinity changed: the pool's affinity store starts again with the new settings.</summary>
    public bool AffinityChanged => Differing.Contains(nameof(PoolSettings.Affinity));

    internal static PoolChange? Of(PoolSettings old, PoolSettings next)
    {
        var differing = SettingsComparer.Differing(old, next);
        return differing.IsEmpty ? null : new PoolChange(next, differing);
    }
}

/// <summary>A frontend whose settings differ; <paramref name="InPlace"/> when its listeners stay.</summary>
public sealed record FrontendChange(FrontendSettings Settings, ImmutableArray<string> Differing, bool InPlace);

/// <summary>
/// Compares settings by what they say, not by reference: two readings of the same file are the
/// same, whatever arrays and sets they were read into.
/// </summary>
public static class SettingsComparer
{
    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> hold the same settings.</summary>
    public static bool Same(object? a, object? b)
    {
        if (ReferenceEquals(a, b))
        {
            return true;
        }
        if (a is null || b is null || a.GetType() != b.GetType())
        {
            return false;
        }
        switch (a)
        {
            case string or Uri:
                return a.Equals(b);
            case Regex regex:
                return regex.ToString() == b.ToString() && regex.Options == ((Regex)b).Options;
            case ISet<string> set:
                return set.SetEquals((ISet<string>)b);
            case IEnumerable sequence:
                var other = Items(b).GetEnumerator();
                foreach (var item in Items(sequence))
                {
                    if (!other.MoveNext() || !Same(item, other.Current))
                    {
                        return false;
                    }
                }
                return !other.MoveNext();
            case ValueType:
                return a.Equals(b);
            case var _ when !IsOurs(a.GetType()):
                // IPAddress, Uri and the like: compared as their types compare them.
                return a.Equals(b);
        }
        return Properties(a.GetType()).All(p => Same(p.GetValue(a), p.GetValue(b)));
    }

    /// <summary>The names of the properties whose values differ between two settings of one type.</summary>
    public static ImmutableArray<string> Differing<T>(T a, T b) where T : class =>
        [.. Properties(typeof(T)).Where(p => !Same(p.GetValue(a), p.GetValue(b))).Select(p => p.Name)];

    /// <summary>A short digest of <paramref name="settings"/>: equal for settings that are <see cref="Same"/>.</summary>
    public static string Fingerprint(object settings)
    {
        var text = new StringBuilder();
        Write(settings, text);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..12];
    }

    /// <summary>The HOCON key a settings property is read from (<c>ConnectTimeout</c> → <c>connect-timeout</c>).</summary>
    public static string KeyName(string property) =>
        Regex.Replace(property, "(?<=[a-z0-9])([A-Z])", "-$1").ToLowerInvariant();

    private static void Write(object? value, StringBuilder text)
    {
        switch (value)
        {
            case null:
                text.Append('~');
                return;
            case string or Uri:
                text.Append(value).Append(';');
                return;
            case Regex regex:
                text.Append(regex).Append('/').Append(regex.Options).Append(';');
                return;
            case ISet<string> set:
                text.Append('{').AppendJoin(',', set.Order(StringComparer.Ordinal)).Append('}');
                return;
            case IEnumerable sequence:
                text.Append('[');
                foreach (var item in Items(sequence))
                {
                    Write(item, text);
                }
                text.Append(']');
                return;
            case ValueType:
            case var _ when !IsOurs(value.GetType()):
                text.Append(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)).Append(';');
                return;
        }
        text.Append('(');
        foreach (var property in Properties(value.GetType()))
        {
            text.Append(property.Name).Append('=');
            Write(property.GetValue(value), text);
        }
        text.Append(')');
    }

    private static bool IsOurs(Type type) => type.Namespace?.StartsWith(nameof(Balancer), StringComparison.Ordinal) == true;

    // An ImmutableArray left default reads as empty (enumerating it would throw).
    private static IEnumerable Items(object sequence) =>
        sequence.GetType() is { IsGenericType: true } type && type.GetGenericTypeDefinition() == typeof(ImmutableArray<>)
            && (bool)type.GetProperty(nameof(ImmutableArray<int>.IsDefault))!.GetValue(sequence)!
            ? Array.Empty<object>()
            : (IEnumerable)sequence;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, PropertyInfo[]> PropertiesByType = new();

    private static PropertyInfo[] Properties(Type type) => PropertiesByType.GetOrAdd(type, t =>
        // What is configured: computed properties (UsesTls) follow from it and are no key of their own.
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0 && (p.SetMethod is not null || !IsOurs(t))).ToArray());
}
