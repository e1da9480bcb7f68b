namespace Ferry.Core.Migration;

public enum MigrationTechnique
{
    /// <summary>Pause first, copy everything, resume at the destination (static migration).</summary>
    StopAndCopy,

    /// <summary>Copy while running in rounds, then pause and copy the rest.</summary>
    PreCopy,
}

public static class MigrationTechniqueNames
{
    public static string ToWire(this MigrationTechnique t) => t switch
    {
        MigrationTechnique.StopAndCopy => "stop-and-copy",
        _ => "precopy",
    };

    public static bool TryParse(string text, out MigrationTechnique technique)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "stop-and-copy" or "stopandcopy" or "static":
                technique = MigrationTechnique.StopAndCopy;
                return true;
            case "precopy" or "pre-copy":
                technique = MigrationTechnique.PreCopy;
                return true;
            default:
                technique = default;
                return false;
        }
    }
}
