namespace Ferry.Core.Migration;

/// <summary>How the destination puts received pages into guest RAM (<c>--page-install auto|uffd|copy</c>).</summary>
public enum PageInstallChoice
{
    /// <summary>uffd where the host offers userfaultfd MISSING mode, else copy.</summary>
    Auto,

    /// <summary>UFFDIO_COPY in contiguous runs into a MISSING-registered region: no user-space fault per fresh page. An error where unavailable.</summary>
    Uffd,

    /// <summary>A plain copy into each page (a page fault per fresh page).</summary>
    Copy,
}
