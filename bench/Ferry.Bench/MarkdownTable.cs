using System.Text;

namespace Ferry.Bench;

/// <summary>A GitHub-flavoured Markdown table with padded columns, so it reads well in a terminal too.</summary>
internal sealed class MarkdownTable(params string[] headers)
{
    private readonly string[] _headers = headers;
    private readonly List<string[]> _rows = [];

    public void Add(params string[] cells)
    {
        if (cells.Length != _headers.Length)
        {
            throw new ArgumentException($"row has {cells.Length} cells; the table has {_headers.Length} columns", nameof(cells));
        }
        _rows.Add(cells.Select(c => c.Replace("|", "\\|", StringComparison.Ordinal)).ToArray());
    }

    public override string ToString()
    {
        int[] width = _headers.Select(h => h.Length).ToArray();
        foreach (string[] r in _rows)
        {
            for (int i = 0; i < r.Length; i++)
            {
                width[i] = Math.Max(width[i], r[i].Length);
            }
        }
        var sb = new StringBuilder();
        AppendRow(sb, _headers, width);
        sb.Append('|');
        foreach (int w in width)
        {
            sb.Append(' ').Append('-', w).Append(" |");
        }
        sb.Append('\n');
        foreach (string[] r in _rows)
        {
            AppendRow(sb, r, width);
        }
        return sb.ToString();
    }

    private static void AppendRow(StringBuilder sb, string[] cells, int[] width)
    {
        sb.Append('|');
        for (int i = 0; i < cells.Length; i++)
        {
            sb.Append(' ').Append(cells[i].PadRight(width[i])).Append(" |");
        }
        sb.Append('\n');
    }
}
