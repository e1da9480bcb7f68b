namespace Ferry.Vm.Memory;

/// <summary>
/// A vCPU touched a post-copy page that will not arrive (the link is gone, the source aborted, or
/// the wait timed out). Thrown out of the guest's step; the VM stops that vCPU and records why.
/// </summary>
public sealed class GuestPageUnavailableException(long page, string reason)
    : Exception($"guest page {page} is unavailable: {reason}")
{
    public long Page { get; } = page;

    public string Reason { get; } = reason;
}
