using Ferry.Core.Paging;

namespace Ferry.Vm.Memory;

/// <summary>
/// Installs received pages at the destination. When the guest RAM is in fast-install mode it
/// gathers consecutive never-written pages into contiguous runs (a pinned staging buffer, since
/// the pages arrive interleaved with entry headers) and hands each run to the kernel in one
/// UFFDIO_COPY; everything else is copied page by page. Call <see cref="Flush"/> at the end of
/// every batch, before anything else reads or writes the pages.
/// </summary>
public sealed class PageInstaller
{
    public const int RunPages = 256;
    private readonly GuestMemory _memory;
    private readonly byte[] _staging = GC.AllocateUninitializedArray<byte>(RunPages * PageSize.Bytes, pinned: true);
    private long _runStart = -1;
    private int _runPages;

    public PageInstaller(GuestMemory memory)
    {
        _memory = memory;
    }

    public void Add(long page, ReadOnlySpan<byte> content)
    {
        if (!_memory.FastInstallActive || _memory.IsPopulated(page))
        {
            Flush();
            _memory.InstallPage(page, content);
            return;
        }
        if (_runPages > 0 && (page != _runStart + _runPages || _runPages == RunPages))
        {
            Flush();
        }
        if (_runPages == 0)
        {
            _runStart = page;
        }
        content.CopyTo(_staging.AsSpan(_runPages * PageSize.Bytes, PageSize.Bytes));
        _runPages++;
    }

    public void Flush()
    {
        if (_runPages == 0)
        {
            return;
        }
        _memory.InstallRun(_runStart, _staging.AsSpan(0, _runPages * PageSize.Bytes));
        _runPages = 0;
    }
}
