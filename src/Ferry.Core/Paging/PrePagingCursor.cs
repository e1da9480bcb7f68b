namespace Ferry.Core.Paging;

/// <summary>
/// The order in which post-copy pushes pages that are still at the source. Before any fault it
/// walks upwards from page 0 (plain active push). After a fault at page p it continues outward
/// from p — p+1, p−1, p+2, p−2 … — because a guest that touched p is likely to touch its
/// neighbours next (pre-paging), until the next fault moves the centre. Pages no longer pending
/// (sent on demand, or never needed) are skipped whole words at a time. The first
/// <see cref="Window"/> pages after a fault count as pre-paging in the report; the walk
/// continues the same way after that, but it is then just the background push.
/// Plain code over a bitmap so the simulator can use the same order.
/// </summary>
public sealed class PrePagingCursor
{
    public const int DefaultWindow = 64;

    private readonly DirtyBitmap _pending;
    private long _up;
    private long _down = -1;
    private bool _downNext;
    private long _sinceCentre;
    private bool _hasCentre;

    /// <param name="pending">Pages still to send; the caller must send (and clear) every page <see cref="TryNext"/> returns: the cursor does not come back to it.</param>
    /// <param name="window">Pages after each fault that count as pre-paged.</param>
    public PrePagingCursor(DirtyBitmap pending, int window = DefaultWindow)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        _pending = pending;
        Window = window;
    }

    public int Window { get; }

    /// <summary>Moves the centre to a faulted page. The page itself is the caller's to send (on demand); if still pending it comes first.</summary>
    public void Recentre(long page)
    {
        _up = page;
        _down = page - 1;
        _downNext = false;
        _sinceCentre = 0;
        _hasCentre = true;
    }

    /// <summary>The next pending page in push order, without clearing it. False when no page is pending.</summary>
    /// <param name="prePaged">True while the page is within <see cref="Window"/> of the last fault.</param>
    public bool TryNext(out long page, out bool prePaged)
    {
        for (int attempt = 0; attempt < 2; attempt++)
        {
            if (_downNext)
            {
                long d = _pending.PreviousSet(_down);
                _downNext = false;
                if (d >= 0)
                {
                    _down = d - 1;
                    return Found(d, out page, out prePaged);
                }
                _down = -1;
            }
            else
            {
                long u = _pending.NextSet(_up);
                // Alternate only while the other side still has pages; a fault never seen keeps _down at -1.
                _downNext = _down >= 0;
                if (u >= 0)
                {
                    _up = u + 1;
                    return Found(u, out page, out prePaged);
                }
                _up = _pending.PageCount;
            }
        }
        page = -1;
        prePaged = false;
        return false;
    }

    private bool Found(long p, out long page, out bool prePaged)
    {
        page = p;
        prePaged = _hasCentre && _sinceCentre < Window;
        _sinceCentre++;
        return true;
    }
}
