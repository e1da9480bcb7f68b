using Ferry.Core.Paging;

namespace Ferry.Tests.Support;

/// <summary>Post-copy pending maps for tests: the pages still at the source.</summary>
internal static class PendingPages
{
    public static DirtyBitmap Of(long guestPages, params long[] missing)
    {
        var b = new DirtyBitmap(guestPages);
        foreach (long p in missing)
        {
            b.Set(p);
        }
        return b;
    }
}
