using Ferry.Core.Paging;
using Ferry.Core.Workloads;
using Ferry.Vm.Cpu;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Programs;

/// <summary>
/// The dirtying benchmark: each operation writes <see cref="WorkloadSpec.BytesPerWrite"/> bytes
/// into one page of the working set, chosen by the access pattern, with content of the chosen kind.
/// Each vCPU owns an equal slice of the working set, so several vCPUs stay deterministic.
/// Registers: R0 = RNG state, R1 = sequential cursor, R2 = slice first page, R3 = slice pages.
/// </summary>
public sealed class MemTouchProgram : IGuestProgram
{
    private const string TextAlphabet = "the quick brown fox jumps over the lazy dog 0123456789 ETAOIN SHRDLU\n";
    private readonly WorkloadSpec _spec;
    private ZipfSampler? _zipf;
    private long _zipfPages;

    public MemTouchProgram(WorkloadSpec spec)
    {
        _spec = spec;
    }

    public bool IsIdle => false;

    public void Initialize(ref VcpuState state, int vcpuIndex, int vcpuCount, long guestPages)
    {
        long wssPages = Math.Clamp(PageSize.PagesFor(_spec.WorkingSetBytes), 1, guestPages);
        long slice = Math.Max(1, wssPages / vcpuCount);
        long first = Math.Min(slice * vcpuIndex, guestPages - 1);
        state.R[0] = _spec.Seed * 0x9E3779B97F4A7C15UL + (ulong)vcpuIndex + 1;
        state.R[1] = 0;
        state.R[2] = (ulong)first;
        state.R[3] = (ulong)Math.Min(slice, guestPages - first);
    }

    public int Step(ref VcpuState state, GuestMemory memory, int budget)
    {
        Span<byte> buffer = stackalloc byte[PageSize.Bytes];
        int bytes = _spec.BytesPerWrite;
        ulong rng = state.R[0];
        ulong cursor = state.R[1];
        long first = (long)state.R[2];
        long pages = (long)state.R[3];
        int done = 0;
        for (; done < budget; done++)
        {
            long index = NextIndex(ref rng, ref cursor, pages);
            long page = first + index;
            int offset = (int)SplitMix64.NextBelow(ref rng, PageSize.Bytes - bytes + 1);
            Fill(buffer[..bytes], ContentFor(page), ref rng);
            memory.Write(page, offset, buffer[..bytes]);
        }
        state.R[0] = rng;
        state.R[1] = cursor;
        state.Ops += (ulong)done;
        return done;
    }

    private long NextIndex(ref ulong rng, ref ulong cursor, long pages)
    {
        switch (_spec.Pattern)
        {
            case AccessPattern.Sequential:
                return (long)(cursor++ % (ulong)pages);
            case AccessPattern.HotCold:
            {
                long hot = Math.Max(1, (long)(pages * _spec.HotFraction));
                bool toHot = SplitMix64.NextDouble(ref rng) < _spec.HotProbability || hot >= pages;
                return toHot ? SplitMix64.NextBelow(ref rng, hot) : hot + SplitMix64.NextBelow(ref rng, pages - hot);
            }
            case AccessPattern.Zipf:
            {
                if (_zipf is null || _zipfPages != pages)
                {
                    _zipf = new ZipfSampler(pages, _spec.Theta);
                    _zipfPages = pages;
                }
                long rank = _zipf.Sample(ref rng) - 1;
                // Scatter ranks over the slice (2654435761 is prime, so this is a bijection) so hot
                // pages are not all neighbours, as in a real heap.
                return (long)((UInt128)(ulong)rank * 2654435761UL % (ulong)pages);
            }
            default:
                return SplitMix64.NextBelow(ref rng, pages);
        }
    }

    private PageContent ContentFor(long page) => _spec.Content switch
    {
        PageContent.Mix => ((ulong)page * 0x9E3779B97F4A7C15UL >> 62) switch
        {
            0 => PageContent.Zero,
            1 => PageContent.Random,
            _ => PageContent.Text,
        },
        var c => c,
    };

    private static void Fill(Span<byte> target, PageContent content, ref ulong rng)
    {
        switch (content)
        {
            case PageContent.Zero:
                target.Clear();
                break;
            case PageContent.Text:
                for (int i = 0; i < target.Length; i++)
                {
                    target[i] = (byte)TextAlphabet[(int)SplitMix64.NextBelow(ref rng, TextAlphabet.Length)];
                }
                break;
            default:
                for (int i = 0; i < target.Length; i += 8)
                {
                    ulong r = SplitMix64.Next(ref rng);
                    for (int j = 0; j < 8 && i + j < target.Length; j++)
                    {
                        target[i + j] = (byte)(r >> (8 * j));
                    }
                }
                break;
        }
    }
}
