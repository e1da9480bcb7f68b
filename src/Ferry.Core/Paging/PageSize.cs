namespace Ferry.Core.Paging;

/// <summary>Guest pages are 4 KiB everywhere: bitmaps, frames, traces and reports count pages.</summary>
public static class PageSize
{
    public const int Bytes = 4096;
    public const int Shift = 12;

    public static long PagesFor(long bytes) => (bytes + Bytes - 1) >> Shift;
}
