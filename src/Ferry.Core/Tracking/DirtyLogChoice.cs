namespace Ferry.Core.Tracking;

/// <summary>Which dirty log a migration asks for (<c>--dirty-log auto|kernel|software</c>).</summary>
public enum DirtyLogChoice
{
    /// <summary>Pick by what the host offers and what it measured (see DirtyLogFactory).</summary>
    Auto,

    /// <summary>userfaultfd WP_ASYNC + PAGEMAP_SCAN; an error when the host cannot do it, never a silent fallback.</summary>
    Kernel,

    /// <summary>The memory API's atomic bitmap; works everywhere.</summary>
    Software,
}
