using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ferry.Bench;

/// <summary>The JSON written next to the Markdown: everything measured, per run, with the settings used.</summary>
internal sealed record ResultFile
{
    public string Schema { get; init; } = "ferry.bench/1";
    public string Verb { get; init; } = "";
    public string Command { get; init; } = "";
    public DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset FinishedAt { get; init; }
    public string LoadAverageAtEnd { get; init; } = "";
    public BenchEnvironment Environment { get; init; } = new();
    public object Settings { get; init; } = new();
    public object Summary { get; init; } = new();
    public object Runs { get; init; } = new();

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Builds the result file of one verb's run, saves it and says where: the common end of every verb.</summary>
    public static void Publish(string verb, BenchArgs args, DateTimeOffset startedAt, BenchEnvironment env,
        object settings, object summary, object runs, string? outPath)
    {
        var file = new ResultFile
        {
            Verb = verb,
            Command = string.Join(' ', args.Raw),
            StartedAt = startedAt,
            FinishedAt = DateTimeOffset.Now,
            LoadAverageAtEnd = BenchEnvironment.LoadAverage(),
            Environment = env,
            Settings = settings,
            Summary = summary,
            Runs = runs,
        };
        string saved = file.Save(outPath);
        Console.WriteLine();
        Console.WriteLine($"JSON: {saved}");
    }

    /// <summary>Writes the file (creating its folder) and returns the full path.</summary>
    public string Save(string? path)
    {
        string target = path ?? Path.Combine("bench-results", $"{Verb}-{BenchEnvironment.Stamp()}.json");
        string full = Path.GetFullPath(target);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }
        File.WriteAllText(full, JsonSerializer.Serialize(this, Options));
        return full;
    }
}
