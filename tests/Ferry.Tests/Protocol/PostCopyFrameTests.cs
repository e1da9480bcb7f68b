using System.Text;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Tests.Support;

namespace Ferry.Tests.Protocol;

/// <summary>
/// The exact bytes of the post-copy frame types (13–16), frozen as in <see cref="GoldenFrameTests"/>:
/// only the checksums were taken from a run; every other byte follows docs/protocol.md §3.
/// </summary>
public sealed class PostCopyFrameTests
{
    private static readonly PostCopyComplete SampleComplete = new()
    {
        DigestMatches = true,
        DestinationDigest = "0123456789abcdef",
        Faults = 3,
        FaultLatencyP50Ms = 0.25,
        FaultLatencyP99Ms = 1.5,
        FaultLatencyMaxMs = 2,
        ResumeMs = 40.5,
        DuplicatePages = 2,
        ResumeOps = 1200,
        RunOps = 1500,
        RunMs = 52.25,
        FaultPath = "userfaultfd",
        ZeroFilledOnFault = 7,
    };

    private const string CompleteJson =
        """{"digestMatches":true,"destinationDigest":"0123456789abcdef","problem":null,"faults":3,"faultLatencyP50Ms":0.25,"faultLatencyP99Ms":1.5,"faultLatencyMaxMs":2,"resumeMs":40.5,"duplicatePages":2,"faultPath":"userfaultfd","zeroFilledOnFault":7,"resumeOps":1200,"runOps":1500,"runMs":52.25}""";

    private static void AssertGolden(string expected, FrameType type, byte[] payload, ulong sequence) =>
        Assert.Equal(Hex.Normalize(expected), Hex.Of(FrameWriter.Encode(type, payload, sequence)));

    [Fact]
    public void PageRequest_frame()
    {
        byte[] payload = new byte[PageRequest.Size];
        new PageRequest(0x123456).Write(payload);
        AssertGolden("f9d302dfae2c9e33 | 0d 00 0000 | 08000000 | 0300000000000000 | 5634120000000000",
            FrameType.PageRequest, payload, 3);
        Assert.Equal(new PageRequest(0x123456), PageRequest.Read(payload, guestPages: 0x123457));
    }

    [Fact]
    public void PendingPages_frame()
    {
        byte[] payload = new byte[PendingPagesMessage.HeaderSize + 16];
        int n = PendingPagesMessage.Write(payload, firstWord: 2, [0x8000000000000001UL, 0xf0UL]);
        Assert.Equal(payload.Length, n);
        AssertGolden("829c56eb3a1dc9ad | 0e 00 0000 | 18000000 | 0600000000000000" +
            "| 02000000 02000000" +              // first word 2, 2 words
            "| 0100000000000080 f000000000000000", // pages 128 and 191; pages 196–199
            FrameType.PendingPages, payload, 6);
        Span<ulong> words = stackalloc ulong[2];
        Assert.Equal(2, PendingPagesMessage.Read(payload, expectedFirstWord: 2, totalWords: 4, words));
        Assert.Equal([0x8000000000000001UL, 0xf0UL], words.ToArray());
    }

    [Fact]
    public void PostCopyEnd_frame()
    {
        byte[] payload = new byte[PostCopyEnd.Size];
        new PostCopyEnd(0x0123456789abcdefUL, PagesSent: 300).Write(payload);
        AssertGolden("9fa2f31b21d6bada | 0f 00 0000 | 10000000 | 0900000000000000 | efcdab8967452301 2c01000000000000",
            FrameType.PostCopyEnd, payload, 9);
        Assert.Equal(new PostCopyEnd(0x0123456789abcdefUL, 300), PostCopyEnd.Read(payload));
    }

    [Fact]
    public void PostCopyComplete_frame()
    {
        byte[] payload = ControlJson.Encode(SampleComplete);
        Assert.Equal(CompleteJson, Encoding.UTF8.GetString(payload));
        AssertGolden("b2b2a6acc76d2c96 | 10 00 0000 | 1e010000 | 0300000000000000" + Hex.Of(payload),
            FrameType.PostCopyComplete, payload, 3);
        Assert.Equal(SampleComplete, ControlJson.Decode<PostCopyComplete>(payload, "post-copy complete"));
    }

    [Fact]
    public void PostCopyComplete_without_the_guest_work_counts_reads_them_as_not_measured()
    {
        // What a destination that does not count sends: the source must not read it as "the guest did nothing".
        const string withoutCounts =
            """{"digestMatches":true,"destinationDigest":"0123456789abcdef","problem":null,"faults":3,"faultLatencyP50Ms":0.25,"faultLatencyP99Ms":1.5,"faultLatencyMaxMs":2,"resumeMs":40.5}""";
        PostCopyComplete m = ControlJson.Decode<PostCopyComplete>(Encoding.UTF8.GetBytes(withoutCounts), "post-copy complete");
        Assert.Equal(40.5, m.ResumeMs);
        Assert.Null(m.ResumeOps);
        Assert.Null(m.RunOps);
        Assert.Null(m.RunMs);
    }

    [Fact]
    public void PostCopyResume_frame()
    {
        byte[] payload = ControlJson.Encode(new PostCopyResume { MigrationId = "m-1" });
        Assert.Equal("""{"migrationId":"m-1"}""", Encoding.UTF8.GetString(payload));
        AssertGolden("638e6bc09924566b | 11 00 0000 | 15000000 | 0000000000000000" + Hex.Of(payload),
            FrameType.PostCopyResume, payload, 0);
    }

    [Fact]
    public void Writer_reconnect_restarts_sequences_clears_the_error_and_keeps_counting()
    {
        var broken = new TruncatingStream(new MemoryStream(), limit: 30);
        var writer = new FrameWriter(broken);
        writer.Write(FrameType.Commit, []);
        Assert.Throws<IOException>(() => writer.Write(FrameType.Commit, []));
        var fresh = new MemoryStream();
        writer.Reconnect(fresh);
        writer.Write(FrameType.Commit, []);
        Assert.Equal(FrameWriter.Encode(FrameType.Commit, [], 0), fresh.ToArray());
        Assert.Equal(2 * FrameHeader.Size, writer.BytesWritten);
    }

    [Fact]
    public void A_bitmap_larger_than_one_frame_goes_out_in_ordered_chunks_that_read_back_whole()
    {
        const long pages = PendingPagesMessage.MaxWordsPerFrame * 64L + 100;   // just over one frame
        var sent = new Ferry.Core.Paging.DirtyBitmap(pages);
        foreach (long p in new long[] { 0, 63, 64, 4_194_303, 4_194_304, pages - 1 })
        {
            sent.Set(p);
        }
        var wire = new MemoryStream();
        PendingPagesMessage.WriteAll(new FrameWriter(wire), sent.WordCount, sent.CopyWordsTo);
        wire.Position = 0;
        var reader = new FrameReader(wire);
        var back = new Ferry.Core.Paging.DirtyBitmap(pages);
        var words = new ulong[PendingPagesMessage.MaxWordsPerFrame];
        int frames = 0;
        for (int first = 0; first < back.WordCount; frames++)
        {
            Frame f = reader.Read();
            Assert.Equal(FrameType.PendingPages, f.Type);
            int n = PendingPagesMessage.Read(f.Payload, first, back.WordCount, words);
            back.OrWords(first, words.AsSpan(0, n));
            first += n;
        }
        Assert.Equal(2, frames);
        Assert.Equal(wire.Length, reader.BytesRead);
        Assert.Equal(sent.Count(), back.Count());
        foreach (long p in sent)
        {
            Assert.True(back[p]);
        }
    }

    [Fact]
    public void Page_request_beyond_the_guest_is_malformed()
    {
        byte[] payload = new byte[PageRequest.Size];
        new PageRequest(10).Write(payload);
        var ex = Assert.Throws<ProtocolException>(() => PageRequest.Read(payload, guestPages: 10));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Throws<ProtocolException>(() => PageRequest.Read(payload.AsSpan(0, 7), guestPages: 100));
    }

    [Theory]
    [InlineData(1, 1, 4, "starts at word 1; expected 0")]       // out of order
    [InlineData(0, 5, 4, "of 5 words at word 0")]               // beyond the bitmap
    [InlineData(0, 0, 4, "of 0 words")]                         // empty
    public void Pending_pages_chunk_must_continue_the_bitmap(int first, int count, int total, string message)
    {
        byte[] payload = new byte[PendingPagesMessage.HeaderSize + 8 * count];
        PendingPagesMessage.Write(payload, first, new ulong[count]);
        var ex = Assert.Throws<ProtocolException>(() => PendingPagesMessage.Read(payload, expectedFirstWord: 0, total, new ulong[8]));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void Pending_pages_chunk_with_missing_words_is_malformed()
    {
        byte[] payload = new byte[PendingPagesMessage.HeaderSize + 16];
        PendingPagesMessage.Write(payload, 0, [1UL, 2UL]);
        var ex = Assert.Throws<ProtocolException>(() => PendingPagesMessage.Read(payload.AsSpan(0, payload.Length - 1), 0, 4, new ulong[8]));
        Assert.Contains("carries 15 bytes", ex.Message);
    }

    [Fact]
    public void Post_copy_frames_round_trip_through_the_reader()
    {
        var wire = new MemoryStream();
        byte[] req = new byte[PageRequest.Size];
        new PageRequest(7).Write(req);
        wire.Write(FrameWriter.Encode(FrameType.PageRequest, req, 0));
        wire.Write(FrameWriter.Encode(FrameType.PostCopyComplete, ControlJson.Encode(SampleComplete), 1));
        wire.Position = 0;
        var reader = new FrameReader(wire);
        Frame f = reader.Read();
        Assert.Equal(FrameType.PageRequest, f.Type);
        Assert.Equal(7, PageRequest.Read(f.Payload, 8).Page);
        f = reader.Read();
        Assert.Equal(FrameType.PostCopyComplete, f.Type);
    }
}
