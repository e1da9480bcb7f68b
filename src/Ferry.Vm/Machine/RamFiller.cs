using Ferry.Core.Paging;
using Ferry.Vm.Memory;
using Ferry.Vm.Programs;

namespace Ferry.Vm.Machine;

/// <summary>Writes initial content into every page of guest RAM, deterministically from a seed.</summary>
internal static class RamFiller
{
    public static void Fill(GuestMemory memory, RamFill fill, ulong seed)
    {
        if (fill == RamFill.None)
        {
            return;
        }
        byte[] page = new byte[PageSize.Bytes];
        ulong rng = seed ^ 0xD1B54A32D192ED03UL;
        for (long p = 0; p < memory.PageCount; p++)
        {
            RamFill kind = fill == RamFill.Mix ? (RamFill)(1 + (int)((ulong)p * 0x9E3779B97F4A7C15UL >> 62) % 3) : fill;
            switch (kind)
            {
                case RamFill.Zero:
                    Array.Clear(page);
                    break;
                case RamFill.Text:
                    for (int i = 0; i < page.Length; i++)
                    {
                        page[i] = (byte)(' ' + (int)SplitMix64.NextBelow(ref rng, 95));
                    }
                    break;
                default:
                    for (int i = 0; i < page.Length; i += 8)
                    {
                        BitConverter.TryWriteBytes(page.AsSpan(i), SplitMix64.Next(ref rng));
                    }
                    break;
            }
            memory.Write(p, 0, page);
        }
    }
}
