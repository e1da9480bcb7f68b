using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Tracking;

/// <summary>
/// Dirty tracking by the memory API: every guest write ORs the page's bit into a shared bitmap
/// (a locked instruction, so also a full fence); a harvest swaps each word out atomically.
/// A write racing a harvest therefore lands in this harvest or the next, never in neither.
/// </summary>
public sealed class SoftwareDirtyLog : IDirtyLog
{
    private readonly GuestMemory _memory;
    private readonly DirtyBitmap _live;
    private bool _started;

    public SoftwareDirtyLog(GuestMemory memory, string reason = "software: guest writes go through the memory API")
    {
        _memory = memory;
        _live = new DirtyBitmap(memory.PageCount);
        Reason = reason;
    }

    public string Backend => "software";

    public string Reason { get; }

    public void Start()
    {
        if (_started)
        {
            throw new InvalidOperationException("dirty log already started");
        }
        _memory.ClaimTracking(GuestWriteTracking.Software);
        _live.ClearAll();
        _memory.AttachTracker(_live);
        _started = true;
    }

    public long GetAndClear(DirtyBitmap into)
    {
        if (!_started)
        {
            throw new InvalidOperationException("dirty log not started");
        }
        return _live.HarvestInto(into);
    }

    public void Stop()
    {
        if (_started)
        {
            _memory.AttachTracker(null);
            _memory.ReleaseTracking(GuestWriteTracking.Software);
            _started = false;
        }
    }

    public void Dispose() => Stop();
}
