namespace Balancer.Configuration;

/// <summary>
/// What a usable name and weight are, wherever they come from: configuration files, the admin API,
/// <c>balancer ctl</c> and the routing actor all check them here.
/// </summary>
public static class BackendRules
{
    /// <summary>The lowest weight: the backend takes no new requests.</summary>
    public const int MinWeight = 0;

    /// <summary>The highest weight.</summary>
    public const int MaxWeight = 10000;

    /// <summary>The longest name of a pool, frontend or backend.</summary>
    public const int MaxNameLength = 64;

    /// <summary>The weight range as operators write it.</summary>
    public static string WeightRange => $"{MinWeight}..{MaxWeight}";

    /// <summary>What a usable name looks like, for error messages.</summary>
    public static string NameRule => $"letters, digits, - and _ (at most {MaxNameLength})";

    /// <summary>True for a weight from <see cref="MinWeight"/> to <see cref="MaxWeight"/>.</summary>
    public static bool IsValidWeight(int weight) => weight is >= MinWeight and <= MaxWeight;

    /// <summary>True for a name of a pool, frontend or backend: <see cref="NameRule"/>.</summary>
    public static bool IsValidName(string name) =>
        name.Length is > 0 and <= MaxNameLength && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
