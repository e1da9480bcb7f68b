using System.Diagnostics;
using System.Net.Sockets;
using Ferry.Core.Paging;
using Ferry.Native;
using Ferry.Native.Linux;
using Ferry.Vm.Memory;

namespace Ferry.Bench;

/// <summary>
/// The stream benchmark's second baseline: raw TCP whose receiver lands the bytes in fresh guest
/// memory, i.e. the most a migration to a new destination could reach on this machine. A sender
/// thread writes the migration's wire bytes (a 1 MiB block of random bytes, again and again) over a
/// loopback pair from <see cref="LoopbackMigration.ConnectedPair"/> (the same socket settings as the
/// migration and <see cref="RawTcp"/>); the receiver thread puts them into a new
/// <see cref="AnonymousMapping"/> of the guest's size, one per run, freed after it:
/// <list type="bullet">
/// <item><c>plain</c>: recv straight into the mapping, 1 MiB at a time. The kernel's receive copy
/// faults the pages in; there is no other copy.</item>
/// <item><c>uffd</c>: the mapping is registered userfaultfd MISSING, as
/// <c>GuestMemory.EnableFastInstall</c> does; recv into a reused staging buffer of one run
/// (<see cref="PageInstaller.RunPages"/> pages), then one UFFDIO_COPY per full run
/// (<see cref="Userfaultfd.Copy"/>, the call <c>GuestMemory.InstallRun</c> makes).</item>
/// </list>
/// The wire bytes exceed the guest's size by the framing; the first guest-size bytes (whole pages)
/// fill the mapping once, every page of it fresh, and the rest are received into the staging buffer
/// and dropped, as <see cref="RawTcp"/> drops everything. No framing, checksums or hashes.
/// After each run (untimed) every installed byte is checked against what was sent.
/// </summary>
internal static unsafe class RawTcpIntoFreshMemory
{
    public const string Plain = "plain";
    public const string Uffd = "uffd";

    /// <summary>The engine's run size in bytes: the most one UFFDIO_COPY installs.</summary>
    public const int RunBytes = PageInstaller.RunPages * PageSize.Bytes;

    /// <summary>One transfer.</summary>
    public sealed record Result
    {
        public string Variant { get; init; } = "";

        /// <summary>Bytes sent and received: the migration's wire bytes.</summary>
        public long Bytes { get; init; }
        public long MappingBytes { get; init; }

        /// <summary>Bytes that went into the mapping (whole pages); the rest were received and dropped.</summary>
        public long InstalledBytes { get; init; }

        /// <summary>From the sender's first write to the receiver's last byte in place (last UFFDIO_COPY included).</summary>
        public double Seconds { get; init; }
        public ThreadCpu Sender { get; init; }
        public ThreadCpu Receiver { get; init; }

        /// <summary>Receiver's time inside recv (for plain this includes the page faults of the receive copy).</summary>
        public double ReceiverInRecvSeconds { get; init; }

        /// <summary>Receiver's time inside UFFDIO_COPY (uffd only).</summary>
        public double ReceiverInCopySeconds { get; init; }
        public long UffdCopies { get; init; }
        public int RunPages { get; init; }

        /// <summary>mmap, and for uffd open + UFFDIO_API + UFFDIO_REGISTER: before the timed transfer.</summary>
        public double SetupMs { get; init; }

        /// <summary>Unregister and munmap after the transfer (untimed).</summary>
        public double FreeMs { get; init; }
        public string LoadAverage { get; init; } = "";

        public double BytesPerSecond => Bytes / Seconds;
        public long PagesInstalled => InstalledBytes / PageSize.Bytes;
        public double ReceiverFaultsPerPage => PagesInstalled > 0 ? Receiver.MinorFaults / (double)PagesInstalled : double.NaN;
        public double CpuSeconds => Sender.UserSeconds + Sender.SystemSeconds + Receiver.UserSeconds + Receiver.SystemSeconds;
    }

    /// <summary>Null when the uffd variant can run here; otherwise why not (it is then skipped).</summary>
    public static string? UffdUnavailableReason()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "userfaultfd needs Linux";
        }
        try
        {
            using var probe = new AnonymousMapping(Environment.SystemPageSize);
            using Userfaultfd fd = Userfaultfd.Open();
            fd.Handshake(UserfaultfdFeatures.None);
            fd.Register(probe, 0, probe.Length, UserfaultfdRegisterMode.Missing);
            return null;
        }
        catch (Exception ex) when (ex is NativeCallException or PlatformNotSupportedException)
        {
            return ex.Message;
        }
    }

    /// <summary>Moves exactly <paramref name="bytes"/> bytes into a new mapping of <paramref name="guestBytes"/>; bounded by <paramref name="timeout"/>.</summary>
    public static Result Measure(string variant, long bytes, long guestBytes, TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(guestBytes);
        if (variant != Plain && variant != Uffd)
        {
            throw new ArgumentOutOfRangeException(nameof(variant), variant, "not plain or uffd");
        }
        if (guestBytes % Environment.SystemPageSize != 0)
        {
            throw new ArgumentException($"guest size {guestBytes} is not a whole number of pages", nameof(guestBytes));
        }
        bool uffd = variant == Uffd;
        long installBytes = Math.Min(bytes, guestBytes) & ~((long)PageSize.Bytes - 1);

        // Sender's block and receiver's staging: allocated and touched before the clock starts, reused for the whole run.
        byte[] pattern = GC.AllocateUninitializedArray<byte>(RawTcp.BufferSize, pinned: true);
        Random.Shared.NextBytes(pattern);
        byte[] staging = GC.AllocateArray<byte>(RunBytes, pinned: true);
        staging.AsSpan().Fill(1);

        long setup0 = Stopwatch.GetTimestamp();
        var mapping = new AnonymousMapping(guestBytes);
        Userfaultfd? fd = null;
        bool receiverMayStillRun = false;
        double setupMs = 0;
        double freeMs = 0;
        long started = 0;
        long finished = 0;
        double recvSeconds = 0;
        double copySeconds = 0;
        long copies = 0;
        ThreadCpu senderCpu = ThreadCpu.Zero;
        ThreadCpu receiverCpu = ThreadCpu.Zero;
        string load = BenchEnvironment.LoadAverage();
        try
        {
            if (uffd)
            {
                if (!OperatingSystem.IsLinux())
                {
                    throw new PlatformNotSupportedException("userfaultfd needs Linux");
                }
                // As GuestMemory.EnableFastInstall: no features, the whole guest range in MISSING mode.
                fd = Userfaultfd.Open();
                fd.Handshake(UserfaultfdFeatures.None);
                fd.Register(mapping, 0, guestBytes, UserfaultfdRegisterMode.Missing);
            }
            setupMs = Stopwatch.GetElapsedTime(setup0).TotalMilliseconds;

            var (client, server) = LoopbackMigration.ConnectedPair();
            int timeoutMs = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
            client.SendTimeout = timeoutMs;
            server.ReceiveTimeout = timeoutMs;
            using var sendStream = new NetworkStream(client, ownsSocket: true);
            using var recvStream = new NetworkStream(server, ownsSocket: true);
            Exception? sendError = null;
            Exception? recvError = null;
            Userfaultfd? installFd = fd;

            var receiver = new Thread(() =>
            {
                ThreadCpu cpu0 = ThreadCpu.Now();
                try
                {
                    (recvSeconds, copySeconds, copies) = installFd is null
                        ? ReceivePlain(recvStream, mapping, bytes, installBytes, staging)
                        : ReceiveUffd(recvStream, mapping, installFd, bytes, installBytes, staging);
                    Volatile.Write(ref finished, Stopwatch.GetTimestamp());
                }
                catch (Exception ex)
                {
                    recvError = ex;
                }
                finally
                {
                    receiverCpu = ThreadCpu.Now() - cpu0;
                }
            })
            { IsBackground = true, Name = $"fresh-{variant}-receiver" };

            var sender = new Thread(() =>
            {
                ThreadCpu cpu0 = ThreadCpu.Now();
                try
                {
                    long left = bytes;
                    Volatile.Write(ref started, Stopwatch.GetTimestamp());
                    while (left > 0)
                    {
                        int n = (int)Math.Min(pattern.Length, left);
                        sendStream.Write(pattern, 0, n);
                        left -= n;
                    }
                }
                catch (Exception ex)
                {
                    sendError = ex;
                }
                finally
                {
                    senderCpu = ThreadCpu.Now() - cpu0;
                }
            })
            { IsBackground = true, Name = $"fresh-{variant}-sender" };

            receiverMayStillRun = true;
            receiver.Start();
            sender.Start();
            bool ok = sender.Join(timeout) & receiver.Join(timeout);
            if (!ok)
            {
                // Closing both ends unblocks whichever thread is stuck; the socket timeouts bound the rest.
                sendStream.Dispose();
                recvStream.Dispose();
                sender.Join(TimeSpan.FromSeconds(10));
                receiver.Join(TimeSpan.FromSeconds(10));
                receiverMayStillRun = receiver.IsAlive;
                throw new TimeoutException($"raw TCP into fresh memory ({variant}) of {bytes} bytes did not finish within {timeout.TotalSeconds:0} s");
            }
            receiverMayStillRun = false;
            Exception? e = sendError ?? recvError;
            if (e is not null)
            {
                throw new IOException($"raw TCP into fresh memory ({variant}) failed: " + e.Message, e);
            }

            // Unregister before reading anything back: a page the run left missing becomes
            // zero-fill-on-demand again instead of a fault with no resolver (kernel.md, Probe 2).
            if (fd is not null && OperatingSystem.IsLinux())
            {
                fd.Unregister(mapping, 0, guestBytes);
                fd.Dispose();
                fd = null;
            }
            Verify(mapping, installBytes, pattern, variant);
        }
        finally
        {
            // A receiver that did not stop may still write into the mapping: leak it rather than unmap under it.
            if (!receiverMayStillRun)
            {
                long f0 = Stopwatch.GetTimestamp();
                fd?.Dispose();
                mapping.Dispose();
                freeMs = Stopwatch.GetElapsedTime(f0).TotalMilliseconds;
            }
        }
        return new Result
        {
            Variant = variant,
            Bytes = bytes,
            MappingBytes = guestBytes,
            InstalledBytes = installBytes,
            Seconds = (finished - started) / (double)Stopwatch.Frequency,
            Sender = senderCpu,
            Receiver = receiverCpu,
            ReceiverInRecvSeconds = recvSeconds,
            ReceiverInCopySeconds = copySeconds,
            UffdCopies = copies,
            RunPages = uffd ? PageInstaller.RunPages : 0,
            SetupMs = setupMs,
            FreeMs = freeMs,
            LoadAverage = load,
        };
    }

    /// <summary>recv straight into the mapping (1 MiB at a time, as <see cref="RawTcp"/> reads), then the excess into <paramref name="scratch"/>.</summary>
    private static (double RecvSeconds, double CopySeconds, long Copies) ReceivePlain(NetworkStream stream, AnonymousMapping mapping, long bytes, long installBytes, byte[] scratch)
    {
        byte* dst = mapping.Pointer;
        long recvTicks = 0;
        long got = 0;
        // Every pass either makes progress or throws; each recv is bounded by the socket's receive timeout.
        while (got < bytes)
        {
            Span<byte> target = got < installBytes
                ? new Span<byte>(dst + got, (int)Math.Min(RawTcp.BufferSize, installBytes - got))
                : scratch.AsSpan(0, (int)Math.Min(scratch.Length, bytes - got));
            long r0 = Stopwatch.GetTimestamp();
            int n = stream.Read(target);
            recvTicks += Stopwatch.GetTimestamp() - r0;
            if (n == 0)
            {
                throw new IOException($"sender closed after {got} of {bytes} bytes");
            }
            got += n;
        }
        return (recvTicks / (double)Stopwatch.Frequency, 0, 0);
    }

    /// <summary>recv into the staging buffer until it holds a full run, then one UFFDIO_COPY of the run into the mapping; the excess is received into the staging buffer and dropped.</summary>
    private static (double RecvSeconds, double CopySeconds, long Copies) ReceiveUffd(NetworkStream stream, AnonymousMapping mapping, Userfaultfd fd, long bytes, long installBytes, byte[] staging)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("userfaultfd needs Linux");
        }
        long recvTicks = 0;
        long copyTicks = 0;
        long copies = 0;
        long got = 0;
        long installed = 0;
        int fill = 0;
        while (got < bytes)
        {
            int runLength = (int)Math.Min(RunBytes, installBytes - installed);
            Span<byte> target = runLength > 0
                ? staging.AsSpan(fill, runLength - fill)
                : staging.AsSpan(0, (int)Math.Min(staging.Length, bytes - got));
            long r0 = Stopwatch.GetTimestamp();
            int n = stream.Read(target);
            long r1 = Stopwatch.GetTimestamp();
            recvTicks += r1 - r0;
            if (n == 0)
            {
                throw new IOException($"sender closed after {got} of {bytes} bytes");
            }
            got += n;
            if (runLength > 0)
            {
                fill += n;
                if (fill == runLength)
                {
                    long done = fd.Copy(mapping, installed, staging.AsSpan(0, runLength));
                    copyTicks += Stopwatch.GetTimestamp() - r1;
                    copies++;
                    if (done != runLength)
                    {
                        // Nothing else writes this mapping, so no page of it can be present yet.
                        throw new InvalidOperationException($"UFFDIO_COPY at offset {installed + done} met a present page in a fresh mapping");
                    }
                    installed += runLength;
                    fill = 0;
                }
            }
        }
        if (installed != installBytes)
        {
            throw new InvalidOperationException($"installed {installed} of {installBytes} bytes");
        }
        return (recvTicks / (double)Stopwatch.Frequency, copyTicks / (double)Stopwatch.Frequency, copies);
    }

    /// <summary>Every installed byte equals what was sent: stream offset o carries pattern[o mod pattern length].</summary>
    private static void Verify(AnonymousMapping mapping, long installBytes, byte[] pattern, string variant)
    {
        for (long offset = 0; offset < installBytes; offset += pattern.Length)
        {
            int n = (int)Math.Min(pattern.Length, installBytes - offset);
            if (!mapping.GetReadOnlySpan(offset, n).SequenceEqual(pattern.AsSpan(0, n)))
            {
                throw new InvalidOperationException($"raw TCP into fresh memory ({variant}): the mapping differs from the bytes sent in [{offset}, +{n})");
            }
        }
    }
}
