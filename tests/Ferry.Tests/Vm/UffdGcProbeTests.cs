using System.Diagnostics;
using Ferry.Tests.Support;

namespace Ferry.Tests.Vm;

/// <summary>
/// The kernel post-copy path keeps its fault resolver in managed code of the same process, which
/// kernel.md (Probe 2) shows can deadlock with the GC. These run the probe in a child process —
/// a deadlock there cannot take the test run down — with guest accesses as Ferry makes them
/// (must finish) and with a plain managed store (must hang: the control).
/// </summary>
public sealed class UffdGcProbeTests
{
    private static (bool Exited, int ExitCode, string Output) RunProbe(string mode, TimeSpan limit)
    {
        string testAssembly = typeof(UffdGcProbe).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(testAssembly);
        psi.ArgumentList.Add(UffdGcProbe.Verb);
        psi.ArgumentList.Add(mode);
        using var child = Process.Start(psi)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        bool exited = child.WaitForExit(limit);
        if (!exited)
        {
            // Only the child this test started, by its own handle.
            child.Kill(entireProcessTree: true);
            child.WaitForExit(TimeSpan.FromSeconds(10));
        }
        string output = (stdout.Wait(TimeSpan.FromSeconds(5)) ? stdout.Result : "") + (stderr.Wait(TimeSpan.FromSeconds(5)) ? stderr.Result : "");
        return (exited, exited ? child.ExitCode : -1, output);
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_gc_while_a_vcpu_waits_in_a_kernel_fault_completes_when_guest_access_is_a_native_call()
    {
        var (exited, code, output) = RunProbe("native", TimeSpan.FromSeconds(60));
        Assert.True(exited, "the probe hung: GC and the userfaultfd resolver deadlocked\n" + output);
        Assert.True(code == 0, $"probe exit {code}: {output}");
        Assert.Contains("ok gc-ms=", output);
        Assert.Contains("gc-during-fault=True", output);
        Assert.Contains("faults=1", output);
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void The_same_wait_with_a_managed_store_deadlocks_which_is_why_guest_access_is_native()
    {
        var (exited, _, output) = RunProbe("managed", TimeSpan.FromSeconds(8));
        Assert.False(exited, "the control finished: a managed store into a missing page did not hang the GC, so the probe cannot tell the two apart\n" + output);
    }

    [Fact]
    public void Guest_memory_copies_keep_their_gc_transition()
    {
        // The transition is what lets a GC proceed while a copy waits in a fault; suppressing it
        // for speed would bring the deadlock back without any other test noticing at once.
        var memcpy = typeof(Ferry.Native.AnonymousMapping).Assembly.GetType("Ferry.Native.Interop.Libc")!
            .GetMethod("memcpy", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static);
        Assert.NotNull(memcpy);
        Assert.Null(memcpy!.GetCustomAttributes(typeof(System.Runtime.InteropServices.SuppressGCTransitionAttribute), inherit: false).FirstOrDefault());
    }
}
