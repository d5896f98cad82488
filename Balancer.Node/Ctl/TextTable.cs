using Spectre.Console;

namespace Balancer.Node.Ctl;

/// <summary>
/// A table for people. On a terminal Spectre.Console draws it, with health and state in color; to a
/// pipe or file it is plain text (a header row, columns padded to their widest cell, numbers
/// right-aligned) that scripts and tests can read.
/// </summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = new();

    public TextTable Row(params object?[] cells)
    {
        _rows.Add(cells.Select(c => c switch
        {
            null => "-",
            double d => d.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture),
            _ => c.ToString() ?? "",
        }).ToArray());
        return this;
    }

    public int Count => _rows.Count;

    public void WriteTo(TextWriter output)
    {
        var numeric = Numeric();
        if (Terminal.For(output) is { } console)
        {
            console.Write(ToSpectre());
            return;
        }
        var widths = headers.Select((h, i) => Math.Max(h.Length, _rows.Count == 0 ? 0 : _rows.Max(r => i < r.Length ? r[i].Length : 0))).ToArray();
        output.WriteLine(Line(headers, widths, numeric).TrimEnd());
        foreach (var row in _rows)
        {
            output.WriteLine(Line(row, widths, numeric).TrimEnd());
        }
    }

    /// <summary>Which columns hold only numbers (or "-"): those are right-aligned.</summary>
    private bool[] Numeric() =>
        headers.Select((_, i) => _rows.Count > 0 && _rows.All(r => i < r.Length && (r[i] == "-" || double.TryParse(r[i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double _)))).ToArray();

    /// <summary>The table as Spectre.Console renders it.</summary>
    public Table ToSpectre()
    {
        var numeric = Numeric();
        var table = new Table().Border(TableBorder.Rounded);
        for (var i = 0; i < headers.Length; i++)
        {
            var column = new TableColumn(new Text(headers[i], new Style(decoration: Decoration.Bold)));
            table.AddColumn(numeric[i] ? column.RightAligned() : column);
        }
        foreach (var row in _rows)
        {
            table.AddRow(row.Select(cell => (Spectre.Console.Rendering.IRenderable)new Text(cell, Terminal.StyleOf(cell))).ToArray());
        }
        return table;
    }

    private static string Line(string[] cells, int[] widths, bool[] numeric) =>
        string.Join("  ", widths.Select((w, i) =>
        {
            var cell = i < cells.Length ? cells[i] : "";
            return numeric[i] ? cell.PadLeft(w) : cell.PadRight(w);
        }));
}

/// <summary>Whether ctl talks to a person at a terminal, and the colors it uses there.</summary>
internal static class Terminal
{
    /// <summary>Spectre's console when <paramref name="output"/> is this process's terminal; null for a pipe, a file or a test's writer.</summary>
    public static IAnsiConsole? For(TextWriter output) =>
        ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected ? AnsiConsole.Console : null;

    /// <summary>Words that say how something is doing, colored alike wherever they appear.</summary>
    public static Style StyleOf(string word) => word switch
    {
        "up" or "reachable" or "ready" or "active" => new Style(Color.Green),
        "down" or "UNREACHABLE" or "PANIC" => new Style(Color.Red, decoration: Decoration.Bold),
        "drain" or "maint" or "passive" or "joining" or "leaving" or "exiting" => new Style(Color.Yellow),
        _ => Style.Plain,
    };

    /// <summary>The color of an event by its kind: failures red, recoveries green, changes yellow.</summary>
    public static Color ColorOfEvent(string kind) => kind switch
    {
        "backend-down" or "node-unreachable" or "member-removed" or "panic" or "backend-errors" or "backend-slow" or "store-failing" or "store-rebuilt" => Color.Red,
        "backend-up" or "node-reachable" or "member-up" or "panic-over" or "backend-errors-over" or "backend-slow-over" or "store-failing-over" => Color.Green,
        _ => Color.Yellow,
    };
}
