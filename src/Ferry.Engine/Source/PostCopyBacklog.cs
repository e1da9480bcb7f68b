using Ferry.Core.Paging;

namespace Ferry.Engine.Source;

/// <summary>
/// The source's page sets for post-copy: what the destination still lacks, the order of the push
/// (outward from the latest fault), and the requests not answered yet. The machine decides when
/// to answer and when to push; this says which pages.
/// </summary>
internal sealed class PostCopyBacklog
{
    public PostCopyBacklog(DirtyBitmap pending)
    {
        Pending = pending;
        Cursor = new PrePagingCursor(pending);
    }

    public DirtyBitmap Pending { get; }

    public PrePagingCursor Cursor { get; private set; }

    /// <summary>Page requests in arrival order (the page numbers were checked against the guest's size on arrival).</summary>
    public Queue<long> Requests { get; } = new();

    /// <summary>After a recovery pending pages may lie behind the cursor: its walk starts again, and the old connection's requests are gone.</summary>
    public void Restart()
    {
        Cursor = new PrePagingCursor(Pending);
        Requests.Clear();
    }
}
