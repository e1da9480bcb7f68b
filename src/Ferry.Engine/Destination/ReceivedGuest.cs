using Ferry.Core.Paging;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>
/// What has arrived of a VM at the destination: fresh guest RAM that no VM runs on (until the
/// commit), the hash of every page as installed, the vCPU registers, and, for post-copy, the map
/// of pages still at the source. The install loops are here; what to do when is the machine's.
/// </summary>
internal sealed class ReceivedGuest : IDisposable
{
    private readonly PageInstaller _installer;
    private long _received;
    private long _hashTicks;
    private int _pendingWords;

    private readonly TimeProvider _time;
    private readonly bool _metered = Telemetry.MigrationTelemetry.Enabled;

    public ReceivedGuest(VmConfig config, GuestMemory memory, TimeProvider time)
    {
        _time = time;
        Config = config;
        Memory = memory;
        _installer = new PageInstaller(memory);
        Digest = new MemoryDigest(memory.PageCount);
        Vcpus = new VcpuState[config.Vcpus];
    }

    public VmConfig Config { get; }

    /// <summary>Guest RAM (owned by this until a VM takes it; post-copy keeps installing into it after that).</summary>
    public GuestMemory Memory { get; }

    /// <summary>True until a VM owns the RAM (and frees it with itself).</summary>
    public bool OwnsMemory { get; private set; } = true;

    public MemoryDigest Digest { get; }

    public VcpuState[] Vcpus { get; }

    /// <summary>Post-copy: the pages still at the source, as the PendingPages frames describe them.</summary>
    public DirtyBitmap? Pending { get; private set; }

    public int PendingWords => _pendingWords;

    /// <summary>Pages installed so far (all connections; before and after the switch).</summary>
    public long Received => Interlocked.Read(ref _received);

    public double HashMs => Interlocked.Read(ref _hashTicks) * 1000.0 / _time.TimestampFrequency;

    /// <summary>Before the switch: installs a checked batch into fresh RAM (UFFDIO_COPY runs where possible) and hashes every page.</summary>
    public int InstallBatch(ReadOnlySpan<byte> payload) => InstallBatch(payload, _installer);

    /// <summary>The same through a given installer: each page connection has its own (installers gather runs, so they are not shared).</summary>
    public int InstallBatch(ReadOnlySpan<byte> payload, PageInstaller installer)
    {
        int pages = PageBatchCodec.Validate(payload, Memory.PageCount, out _);
        long ticks = 0;
        foreach (var e in PageBatchCodec.Entries(payload))
        {
            if (e.Encoding == PageEncoding.Zero)
            {
                installer.Flush();
                Memory.InstallZeroPage(e.Page);
                Digest.Set(e.Page, GuestMemory.ZeroPageHash);
            }
            else
            {
                installer.Add(e.Page, e.Data);
                long t0 = _time.GetTimestamp();
                Digest.Set(e.Page, System.IO.Hashing.XxHash3.HashToUInt64(e.Data));
                ticks += _time.GetTimestamp() - t0;
            }
        }
        installer.Flush();
        Interlocked.Add(ref _hashTicks, ticks);
        Interlocked.Add(ref _received, pages);
        if (_metered)
        {
            Telemetry.MigrationTelemetry.PagesReceived.Add(pages);
        }
        return pages;
    }

    /// <summary>After the switch: installs a checked batch into RAM the VM already runs on, waking vCPUs that wait. Returns the pages that were already present (sent twice).</summary>
    public int InstallArrived(ReadOnlySpan<byte> payload, out int pages)
    {
        pages = PageBatchCodec.Validate(payload, Memory.PageCount, out _);
        int duplicates = 0;
        foreach (var e in PageBatchCodec.Entries(payload))
        {
            bool zero = e.Encoding == PageEncoding.Zero;
            if (!Memory.InstallArrivedPage(e.Page, e.Data, zero))
            {
                duplicates++;
            }
            Digest.Set(e.Page, zero ? GuestMemory.ZeroPageHash : System.IO.Hashing.XxHash3.HashToUInt64(e.Data));
        }
        Interlocked.Add(ref _received, pages);
        if (_metered)
        {
            Telemetry.MigrationTelemetry.PagesReceived.Add(pages);
        }
        return duplicates;
    }

    public void SetVcpu(ReadOnlySpan<byte> payload)
    {
        int index = VcpuStateMessage.Read(payload, VcpuState.SizeInBytes, Config.Vcpus, out ReadOnlySpan<byte> regs);
        Vcpus[index] = VcpuState.Read(regs);
        LastVcpu = index;
    }

    public int LastVcpu { get; private set; }

    /// <summary>Adds a PendingPages frame to the map; returns the words covered so far.</summary>
    public int AddPendingWords(ReadOnlySpan<byte> payload)
    {
        Pending ??= new DirtyBitmap(Memory.PageCount);
        ulong[] words = new ulong[Math.Min(Pending.WordCount, PendingPagesMessage.MaxWordsPerFrame)];
        int n = PendingPagesMessage.Read(payload, _pendingWords, Pending.WordCount, words);
        Pending.OrWords(_pendingWords, words.AsSpan(0, n));
        _pendingWords += n;
        return _pendingWords;
    }

    /// <summary>The RAM now belongs to a VM (which frees it with itself).</summary>
    public GuestMemory HandOver()
    {
        OwnsMemory = false;
        return Memory;
    }

    public void Dispose()
    {
        if (OwnsMemory)
        {
            OwnsMemory = false;
            Memory.Dispose();
        }
    }
}
