namespace Ferry.Core.Migration;

public enum MigrationTechnique
{
    /// <summary>Pause first, copy everything, resume at the destination (static migration).</summary>
    StopAndCopy,

    /// <summary>Copy while running in rounds, then pause and copy the rest.</summary>
    PreCopy,

    /// <summary>Pause, move the vCPU and device state, resume at the destination at once and fetch pages there.</summary>
    PostCopy,

    /// <summary>A fixed number of pre-copy rounds (<see cref="MigrationOptions.HybridRounds"/>), then post-copy.</summary>
    Hybrid,

    /// <summary>Pre-copy while it converges; post-copy as soon as the policy sees it will not.</summary>
    Auto,
}

public static class MigrationTechniqueNames
{
    /// <summary>Every accepted name, for error messages.</summary>
    public const string AllNames = "stop-and-copy, precopy, postcopy, hybrid, auto";

    public static string ToWire(this MigrationTechnique t) => t switch
    {
        MigrationTechnique.StopAndCopy => "stop-and-copy",
        MigrationTechnique.PostCopy => "postcopy",
        MigrationTechnique.Hybrid => "hybrid",
        MigrationTechnique.Auto => "auto",
        _ => "precopy",
    };

    /// <summary>True when the technique may end in post-copy, so the destination must be ready to run the VM before every page arrived.</summary>
    public static bool MayUsePostCopy(this MigrationTechnique t) =>
        t is MigrationTechnique.PostCopy or MigrationTechnique.Hybrid or MigrationTechnique.Auto;

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
            case "postcopy" or "post-copy":
                technique = MigrationTechnique.PostCopy;
                return true;
            case "hybrid":
                technique = MigrationTechnique.Hybrid;
                return true;
            case "auto":
                technique = MigrationTechnique.Auto;
                return true;
            default:
                technique = default;
                return false;
        }
    }
}
