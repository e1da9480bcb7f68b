using Ferry.Core.Paging;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>
/// What has been sent of guest RAM, shared by every connection's sender: the hash of each page as
/// last sent (the digest the destination must match) and which pages went at least once. Senders
/// on different threads touch different pages; the sent-once bits are set atomically because
/// pages of one bitmap word may go on different connections (post-copy answers).
/// </summary>
internal sealed class SentPages(long guestPages)
{
    /// <summary>The hash of every page as last sent (a page never sent counts as zeros).</summary>
    public MemoryDigest Digest { get; } = new(guestPages);

    private readonly DirtyBitmap _ever = new(guestPages);

    /// <summary>Records a page as sent; true the first time.</summary>
    public bool MarkSent(long page) => _ever.TrySetAtomic(page);
}
