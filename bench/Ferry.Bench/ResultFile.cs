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
