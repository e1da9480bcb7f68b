namespace Ferry.Native.Linux;

/// <summary>Receives the written ranges of one scan, as byte offsets into the scanned mapping (page-aligned, end exclusive).</summary>
public interface IWrittenRangeSink
{
    void Add(long startOffset, long endOffset);
}
