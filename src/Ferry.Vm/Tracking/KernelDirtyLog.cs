using System.Runtime.Versioning;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Native.Linux;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Tracking;

/// <summary>
/// Dirty tracking by the kernel: guest RAM is registered with a userfaultfd in write-protect mode
/// with WP_ASYNC (the kernel resolves the fault itself and marks the page written, no handler
/// thread) and WP_UNPOPULATED (never-touched pages are protected too). A harvest is one
/// PAGEMAP_SCAN that returns the written pages and re-protects them in the same walk, so a write
/// racing the harvest is reported by this harvest or the next. Guest writes pay nothing per write;
/// the first write to each page after a harvest takes a minor fault.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class KernelDirtyLog : IDirtyLog
{
    private readonly GuestMemory _memory;
    private Userfaultfd? _uffd;
    private PagemapScanner? _scanner;
    private bool _registered;
    private bool _claimed;

    public KernelDirtyLog(GuestMemory memory, string reason = DirtyLogFactory.KernelReason)
    {
        _memory = memory;
        Reason = reason;
    }

    public string Backend => "kernel";

    public string Reason { get; }

    public void Start()
    {
        if (_claimed)
        {
            throw new InvalidOperationException("dirty log already started");
        }
        _memory.ClaimTracking(GuestWriteTracking.Kernel);
        _claimed = true;
        try
        {
            long length = _memory.SizeBytes;
            _uffd = Userfaultfd.Open();
            _uffd.Handshake(UserfaultfdFeatures.WpAsync | UserfaultfdFeatures.WpUnpopulated);
            _uffd.Register(_memory.Mapping, 0, length, UserfaultfdRegisterMode.WriteProtect);
            _registered = true;
            // Registering does not protect anything: until this call every page scans as written.
            _uffd.WriteProtect(_memory.Mapping, 0, length, protect: true);
            _scanner = new PagemapScanner();
            // A guest write that was under way during the protect call is either caught by the
            // protection or already complete; this makes the completed ones visible to the copier,
            // whose first round reads every populated page after Start returns.
            Interlocked.MemoryBarrierProcessWide();
        }
        catch
        {
            Stop();
            throw;
        }
    }

    public long GetAndClear(DirtyBitmap into)
    {
        PagemapScanner scanner = _scanner ?? throw new InvalidOperationException("dirty log not started");
        if (into.PageCount != _memory.PageCount)
        {
            throw new ArgumentException($"bitmap has {into.PageCount} pages, guest RAM {_memory.PageCount}", nameof(into));
        }
        into.ClearAll();
        var sink = new BitmapSink(into);
        long bytes = scanner.ScanWrittenAndProtect(_memory.Mapping, 0, _memory.SizeBytes, ref sink);
        return bytes >> PageSize.Shift;
    }

    /// <summary>Unregisters guest RAM (dropping its write protection) and closes the uffd. Idempotent.</summary>
    public void Stop()
    {
        if (!_claimed)
        {
            return;
        }
        try
        {
            if (_registered)
            {
                _registered = false;
                _uffd!.Unregister(_memory.Mapping, 0, _memory.SizeBytes);
            }
        }
        finally
        {
            _scanner?.Dispose();
            _scanner = null;
            _uffd?.Dispose();
            _uffd = null;
            _claimed = false;
            _memory.ReleaseTracking(GuestWriteTracking.Kernel);
        }
    }

    public void Dispose() => Stop();

    /// <summary>Turns the scan's byte ranges into guest page bits.</summary>
    private readonly struct BitmapSink(DirtyBitmap bitmap) : IWrittenRangeSink
    {
        public void Add(long startOffset, long endOffset) =>
            bitmap.SetRange(startOffset >> PageSize.Shift, (endOffset + PageSize.Bytes - 1) >> PageSize.Shift);
    }
}
