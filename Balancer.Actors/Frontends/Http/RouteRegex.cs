using System.Text.RegularExpressions;
using Akka.Event;
using Balancer.Configuration;

namespace Balancer.Frontends.Http;

/// <summary>
/// A route's regular expression (on the path or a header), matched without allocating and, for
/// the patterns routes are made of, in a few tens of nanoseconds:
/// <list type="bullet">
/// <item>A literal the pattern anchors at its start (<c>^/items/</c>) or end (<c>/edit$</c>) is
/// compared first, so most routes that cannot match are passed over without running the regex.</item>
/// <item>The regex runs compiled, on .NET's backtracking engine (as PCRE is in HAProxy and NGINX),
/// with a 25 ms budget. The first input that exhausts it (a pattern that backtracks badly on a
/// hostile path) is matched again on the non-backtracking engine, which takes linear time whatever
/// the input (as RE2 is for Envoy), and the route keeps that engine from then on, saying so once.</item>
/// </list>
/// Both engines accept the same patterns here (the settings are validated with the non-backtracking
/// one, which has no backreferences or lookarounds) and agree on what matches.
/// </summary>
internal sealed class RouteRegex
{
    // Wall-clock time: generous enough that a GC pause or a preemption during a harmless match does
    // not move a route, and paid at most once by a hostile input.
    internal static readonly TimeSpan Budget = TimeSpan.FromMilliseconds(25);

    private readonly string _prefix;
    private readonly string _suffix;
    private readonly Regex _safe;
    private readonly string _what;
    private readonly ILoggingAdapter? _log;
    private volatile Regex _engine;

    public RouteRegex(string pattern, string what, ILoggingAdapter? log)
    {
        Pattern = pattern;
        _what = what;
        _log = log;
        (_prefix, _suffix) = AnchoredLiterals(pattern);
        _safe = new Regex(pattern, RouteSettingsReader.RegexOptions);
        _engine = new Regex(pattern, (RouteSettingsReader.RegexOptions & ~RegexOptions.NonBacktracking) | RegexOptions.Compiled, Budget);
    }

    /// <summary>The pattern as configured.</summary>
    public string Pattern { get; }

    /// <summary>True when the engine this route runs on now is the non-backtracking one.</summary>
    public bool Safe => ReferenceEquals(_engine, _safe);

    public bool IsMatch(string input)
    {
        if (!input.StartsWith(_prefix, StringComparison.Ordinal))
        {
            return false;
        }
        if (_suffix.Length > 0 && !input.EndsWith(_suffix, StringComparison.Ordinal)
            // "$" also matches before a final newline.
            && !(input.EndsWith('\n') && input.AsSpan(0, input.Length - 1).EndsWith(_suffix, StringComparison.Ordinal)))
        {
            return false;
        }
        var engine = _engine;
        try
        {
            return engine.IsMatch(input);
        }
        catch (RegexMatchTimeoutException)
        {
            if (!ReferenceEquals(Interlocked.Exchange(ref _engine, _safe), _safe))
            {
                _log?.Warning("{0} \"{1}\" took over {2} ms on an input of {3} characters: it runs on the non-backtracking engine from now on", _what, Pattern, Budget.TotalMilliseconds, input.Length);
            }
            return _safe.IsMatch(input);
        }
    }

    /// <summary>
    /// The literal text every match starts with (after "^") and ends with (before "$"), or "" where
    /// the pattern does not say. Conservative: a pattern with an alternation or an inline group
    /// ("(?i)" can change case sensitivity midway) gives none, and only plain characters count,
    /// never an escaped one or one a quantifier applies to.
    /// </summary>
    internal static (string Prefix, string Suffix) AnchoredLiterals(string pattern)
    {
        if (pattern.Contains('|') || pattern.Contains("(?", StringComparison.Ordinal))
        {
            return ("", "");
        }
        var prefix = "";
        if (pattern.StartsWith('^'))
        {
            var end = 1;
            while (end < pattern.Length && IsPlain(pattern[end]))
            {
                end++;
            }
            // "^/ab?" requires "/a" only.
            if (end < pattern.Length && pattern[end] is '?' or '*' or '+' or '{')
            {
                end--;
            }
            prefix = end > 1 ? pattern[1..end] : "";
        }
        var suffix = "";
        var escaped = EscapeSequences(pattern);
        if (pattern.Length >= 2 && pattern.EndsWith('$') && !escaped[^1])
        {
            var start = pattern.Length - 1;
            while (start > 0 && IsPlain(pattern[start - 1]) && !escaped[start - 1])
            {
                start--;
            }
            suffix = pattern[start..^1];
        }
        return (prefix, suffix);
    }

    /// <summary>Which characters of <paramref name="pattern"/> belong to an escape sequence ("\.", "\x41", "\u00e9", "\101", "\cJ").</summary>
    private static bool[] EscapeSequences(string pattern)
    {
        var escaped = new bool[pattern.Length];
        for (var i = 0; i < pattern.Length; i++)
        {
            if (pattern[i] != '\\')
            {
                continue;
            }
            var length = i + 1 >= pattern.Length ? 1 : pattern[i + 1] switch
            {
                'x' => 4,
                'u' => 6,
                'c' => 3,
                >= '0' and <= '9' => 4,
                _ => 2,
            };
            for (var j = i; j < Math.Min(pattern.Length, i + length); j++)
            {
                escaped[j] = true;
            }
            i += 1;
        }
        return escaped;
    }

    // Characters that stand for themselves in a .NET pattern (no metacharacter, no whitespace).
    private static bool IsPlain(char c) => char.IsAsciiLetterOrDigit(c) || "/-_~%=&,;:@!'\"<>`".Contains(c);
}
