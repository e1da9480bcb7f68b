using Ferry.Core.Paging;

namespace Ferry.Core.Tracking;

/// <summary>
/// Which guest pages were written since the last harvest. Backends: software (guest writes go
/// through the memory API, which marks a bitmap) and, on Linux, the kernel's
/// userfaultfd write-protect + PAGEMAP_SCAN.
/// </summary>
public interface IDirtyLog : IDisposable
{
    /// <summary>Backend name as reported: "software" or "kernel".</summary>
    string Backend { get; }

    /// <summary>Why this backend was chosen, for the report.</summary>
    string Reason { get; }

    /// <summary>Begins tracking. Every write that completes after Start returns is reported by a later harvest.</summary>
    void Start();

    /// <summary>
    /// Overwrites <paramref name="into"/> with the pages written since Start or the previous
    /// call, and clears them, atomically with respect to concurrent writers: a racing write is
    /// reported by this harvest or the next. Copy page contents only after this returns.
    /// </summary>
    long GetAndClear(DirtyBitmap into);

    void Stop();
}
