namespace Balancer.Node.Ctl;

/// <summary>A plain-text table for people: a header row, columns padded to their widest cell, numbers right-aligned.</summary>
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
        var widths = headers.Select((h, i) => Math.Max(h.Length, _rows.Count == 0 ? 0 : _rows.Max(r => i < r.Length ? r[i].Length : 0))).ToArray();
        var numeric = headers.Select((_, i) => _rows.Count > 0 && _rows.All(r => i < r.Length && (r[i] == "-" || double.TryParse(r[i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double _)))).ToArray();
        output.WriteLine(Line(headers, widths, numeric).TrimEnd());
        foreach (var row in _rows)
        {
            output.WriteLine(Line(row, widths, numeric).TrimEnd());
        }
    }

    private static string Line(string[] cells, int[] widths, bool[] numeric) =>
        string.Join("  ", widths.Select((w, i) =>
        {
            var cell = i < cells.Length ? cells[i] : "";
            return numeric[i] ? cell.PadLeft(w) : cell.PadRight(w);
        }));
}
