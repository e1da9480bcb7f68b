using System.Security.Cryptography;
using System.Text;
using Ferry.Protocol.Handshake;

namespace Ferry.Tests.Protocol;

/// <summary>
/// <see cref="ClusterKey.Load"/>: a text key file is its trimmed text (as it always was), any other
/// file its bytes exactly; nothing is decoded lossily, so two different files never give one key.
/// </summary>
public sealed class ClusterKeyFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ferry-key-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Two keys are the same key when they sign alike.</summary>
    private static bool SameKey(ClusterKey a, ClusterKey b) => a.Mac("probe"u8).AsSpan().SequenceEqual(b.Mac("probe"u8));

    [Fact]
    public void Binary_files_differing_in_16_bytes_are_different_keys()
    {
        // Both halves are invalid UTF-8: decoded as text they would both become 16 replacement characters (the old bug).
        byte[] tail = RandomNumberGenerator.GetBytes(32);
        byte[] a = [.. Enumerable.Repeat((byte)0xFF, 16), .. tail];
        byte[] b = [.. Enumerable.Repeat((byte)0xFE, 16), .. tail];
        Assert.Equal(Encoding.UTF8.GetString(a), Encoding.UTF8.GetString(b));

        var keyA = ClusterKey.Load(Write("a.key", a));
        var keyB = ClusterKey.Load(Write("b.key", b));

        Assert.False(SameKey(keyA, keyB));
        Assert.True(SameKey(keyA, new ClusterKey(a)), "a binary key is the file's bytes exactly");
    }

    [Fact]
    public void A_binary_key_keeps_every_byte_even_whitespace_at_its_ends()
    {
        byte[] bytes = [0x0A, 0x00, .. RandomNumberGenerator.GetBytes(30), 0x20, 0x0A];
        var key = ClusterKey.Load(Write("ws.key", bytes));
        Assert.True(SameKey(key, new ClusterKey(bytes)));
    }

    [Fact]
    public void A_too_short_binary_key_is_refused_and_the_message_says_what_is_needed()
    {
        string path = Write("short.bin", [0x00, .. RandomNumberGenerator.GetBytes(19)]);
        var ex = Assert.Throws<ArgumentException>(() => ClusterKey.Load(path));
        Assert.Contains("binary key", ex.Message);
        Assert.Contains("20 bytes", ex.Message);
        Assert.Contains($"at least {ClusterKey.MinimumBinaryLength} bytes", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("too-short-key\n")]
    public void A_too_short_text_key_is_refused_and_the_message_says_what_is_needed(string text)
    {
        string path = Write("short.txt", Encoding.UTF8.GetBytes(text));
        var ex = Assert.Throws<ArgumentException>(() => ClusterKey.Load(path));
        Assert.Contains("text key", ex.Message);
        Assert.Contains($"at least {ClusterKey.MinimumLength}", ex.Message);
    }

    [Fact]
    public void Generated_and_hand_written_text_key_files_keep_the_key_they_always_gave()
    {
        // The key of a text file is the UTF-8 of its trimmed text, as before: what `ferry migrate`
        // writes (ClusterKey.Generate), `xxd -p` output with its newline, a passphrase, a BOM from an editor.
        string generated = ClusterKey.Generate();
        string[] texts = [generated, generated + "\n", "  " + generated + "\r\n", "a cluster passphrase, ünïcode too\n"];
        for (int i = 0; i < texts.Length; i++)
        {
            var loaded = ClusterKey.Load(Write($"t{i}.key", Encoding.UTF8.GetBytes(texts[i])));
            Assert.True(SameKey(loaded, new ClusterKey(Encoding.UTF8.GetBytes(texts[i].Trim()))), $"text key {i}");
        }
        var withBom = ClusterKey.Load(Write("bom.key", [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(generated + "\n")]));
        Assert.True(SameKey(withBom, new ClusterKey(Encoding.UTF8.GetBytes(generated))));
    }

    [Fact]
    public void A_file_far_too_large_to_be_a_key_is_refused_without_reading_it_all()
    {
        string path = Write("big.key", new byte[ClusterKey.MaximumFileLength + 1]);
        var ex = Assert.Throws<ArgumentException>(() => ClusterKey.Load(path));
        Assert.Contains("not a key file", ex.Message);
    }

    [Fact]
    public void A_missing_file_is_refused_with_its_name()
    {
        string path = Path.Combine(_dir, "none.key");
        var ex = Assert.Throws<ArgumentException>(() => ClusterKey.Load(path));
        Assert.Contains(path, ex.Message);
    }
}
