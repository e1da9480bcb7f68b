using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Tracking;
using Ferry.Core.Units;

namespace Ferry.Bench;

/// <summary>
/// The bench's command line: a verb, then <c>--name value</c> pairs (or bare <c>--flag</c>s).
/// Every option a verb reads is marked as used; leftovers are reported as unknown, so a typo
/// fails loudly instead of silently running the default.
/// </summary>
internal sealed class BenchArgs
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _used = new(StringComparer.OrdinalIgnoreCase);

    private BenchArgs(string verb, string[] raw)
    {
        Verb = verb;
        Raw = raw;
    }

    public string Verb { get; }

    public string[] Raw { get; }

    public static BenchArgs Parse(string[] args)
    {
        if (args.Length == 0 || args[0].StartsWith('-'))
        {
            return new BenchArgs("help", args);
        }
        var parsed = new BenchArgs(args[0].ToLowerInvariant(), args);
        for (int i = 1; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                throw new BenchUsageException($"unexpected argument '{a}' (options look like --name value)");
            }
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq > 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                value = args[++i];
            }
            if (!parsed._options.TryAdd(name, value))
            {
                throw new BenchUsageException($"option --{name} given twice");
            }
        }
        return parsed;
    }

    public bool Flag(string name)
    {
        _used.Add(name);
        if (!_options.TryGetValue(name, out string? v))
        {
            return false;
        }
        return v is null || v.Equals("true", StringComparison.OrdinalIgnoreCase) || v == "1";
    }

    public string? String(string name)
    {
        _used.Add(name);
        if (!_options.TryGetValue(name, out string? v))
        {
            return null;
        }
        return v ?? throw new BenchUsageException($"option --{name} needs a value");
    }

    public long Bytes(string name, long fallback)
    {
        string? v = String(name);
        if (v is null)
        {
            return fallback;
        }
        return UnitParser.TryParseBytes(v, out long b, out string error) && b > 0
            ? b
            : throw new BenchUsageException($"--{name}: {(error.Length > 0 ? error : "must be positive")}");
    }

    /// <summary>A comma list of sizes (example: 256MiB,1GiB), in the order given.</summary>
    public IReadOnlyList<long> BytesList(string name, IReadOnlyList<long> fallback)
    {
        string? v = String(name);
        if (v is null)
        {
            return fallback;
        }
        var list = new List<long>();
        foreach (string part in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!UnitParser.TryParseBytes(part, out long b, out string error) || b <= 0)
            {
                throw new BenchUsageException($"--{name}: '{part}': {(error.Length > 0 ? error : "must be positive")}");
            }
            list.Add(b);
        }
        return list.Count > 0 ? list : throw new BenchUsageException($"--{name} is empty");
    }

    /// <summary>A comma list of words, each one of <paramref name="allowed"/>, in the order given, without repeats.</summary>
    public IReadOnlyList<string> WordList(string name, string fallback, params string[] allowed)
    {
        string text = String(name) ?? fallback;
        var list = new List<string>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string w = part.ToLowerInvariant();
            if (!allowed.Contains(w))
            {
                throw new BenchUsageException($"--{name}: '{part}' is not one of {string.Join(", ", allowed)}");
            }
            if (list.Contains(w))
            {
                throw new BenchUsageException($"--{name}: '{part}' is listed twice");
            }
            list.Add(w);
        }
        return list.Count > 0 ? list : throw new BenchUsageException($"--{name} is empty");
    }

    public long Rate(string name, long fallback)
    {
        string? v = String(name);
        if (v is null)
        {
            return fallback;
        }
        return UnitParser.TryParseRate(v, out long r, out string error) && r > 0
            ? r
            : throw new BenchUsageException($"--{name}: {(error.Length > 0 ? error : "must be positive")}");
    }

    public int Int(string name, int fallback, int min, int max)
    {
        string? v = String(name);
        if (v is null)
        {
            return fallback;
        }
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < min || n > max)
        {
            throw new BenchUsageException($"--{name} must be a whole number between {min} and {max}, got '{v}'");
        }
        return n;
    }

    /// <summary><c>--page-install auto|uffd|copy</c> (DestinationLimits.PageInstall).</summary>
    public PageInstallChoice PageInstall(string name = "page-install") => ParsePageInstall(name, String(name) ?? "auto");

    /// <summary>A comma list of page-install choices (each auto, uffd or copy), in the order given, without repeats.</summary>
    public IReadOnlyList<PageInstallChoice> PageInstallList(string name, string fallback)
    {
        string text = String(name) ?? fallback;
        var list = new List<PageInstallChoice>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            PageInstallChoice c = ParsePageInstall(name, part);
            if (list.Contains(c))
            {
                throw new BenchUsageException($"--{name}: '{part}' is listed twice");
            }
            list.Add(c);
        }
        return list.Count > 0 ? list : throw new BenchUsageException($"--{name} is empty");
    }

    /// <summary><c>--dirty-log auto|kernel|software</c> (MigrationOptions.DirtyLog).</summary>
    public DirtyLogChoice DirtyLog(string name = "dirty-log") => (String(name) ?? "auto").Trim().ToLowerInvariant() switch
    {
        "auto" => DirtyLogChoice.Auto,
        "kernel" => DirtyLogChoice.Kernel,
        "software" => DirtyLogChoice.Software,
        var other => throw new BenchUsageException($"--{name}: '{other}' is not one of auto, kernel, software"),
    };

    private static PageInstallChoice ParsePageInstall(string name, string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => PageInstallChoice.Auto,
        "uffd" => PageInstallChoice.Uffd,
        "copy" => PageInstallChoice.Copy,
        var other => throw new BenchUsageException($"--{name}: '{other}' is not one of auto, uffd, copy"),
    };

    /// <summary>The command-line spelling of a choice.</summary>
    public static string Name(PageInstallChoice c) => c.ToString().ToLowerInvariant();

    /// <summary>The command-line spelling of a choice.</summary>
    public static string Name(DirtyLogChoice c) => c.ToString().ToLowerInvariant();

    /// <summary>Throws when an option was given that no code read.</summary>
    public void RejectUnknown()
    {
        string[] unknown = _options.Keys.Where(k => !_used.Contains(k)).ToArray();
        if (unknown.Length > 0)
        {
            throw new BenchUsageException($"unknown option(s) for '{Verb}': {string.Join(", ", unknown.Select(u => "--" + u))}");
        }
    }
}

/// <summary>A command-line mistake: printed with the usage text, exit code 2.</summary>
internal sealed class BenchUsageException(string message) : Exception(message);
