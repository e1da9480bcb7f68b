using Ferry.Protocol.Messages;
using Ferry.Vm.Machine;

namespace Ferry.Engine.Destination;

/// <summary>
/// Times the resume phase (VM running here → last pending page installed) and counts the guest's
/// operations at the destination during post-copy. The source's own count stops at its pause, so
/// without this the guest's work after the switch would read as none. Everything is measured on
/// this host's clock and sent as durations.
/// </summary>
internal sealed class GuestWorkMeter
{
    private readonly VirtualMachine _vm;
    private readonly object _gate = new();
    private readonly TimeProvider _time;
    private readonly long _runningAt;
    private readonly ulong _opsAtRunning;
    private ulong? _opsAtLastPage;
    private long _lastPageAt;

    /// <param name="allPagesPresent">Nothing was missing at the start: the resume phase is empty.</param>
    public GuestWorkMeter(VirtualMachine vm, TimeProvider time, bool allPagesPresent)
    {
        _vm = vm;
        _time = time;
        _runningAt = time.GetTimestamp();
        _opsAtRunning = vm.TotalOps;
        if (allPagesPresent)
        {
            _opsAtLastPage = _opsAtRunning;
            _lastPageAt = _runningAt;
        }
    }

    /// <summary>The last pending page is installed: the resume phase ends. Later calls change nothing.</summary>
    public void LastPageArrived()
    {
        // Page connections and the control connection install concurrently: the first to see the last page wins.
        lock (_gate)
        {
            if (_opsAtLastPage is null)
            {
                _opsAtLastPage = _vm.TotalOps;
                _lastPageAt = _time.GetTimestamp();
            }
        }
    }

    /// <summary>The verdict with the resume phase's length and the guest's work so far: the resume phase's ops, and everything since the VM started here.</summary>
    public PostCopyComplete AddTo(PostCopyComplete verdict)
    {
        ulong now = _vm.TotalOps;
        lock (_gate)
        {
            return Add(verdict, now);
        }
    }

    private PostCopyComplete Add(PostCopyComplete verdict, ulong now)
    {
        return verdict with
        {
            ResumeMs = _lastPageAt == 0 ? 0 : _time.GetElapsedTime(_runningAt, _lastPageAt).TotalMilliseconds,
            ResumeOps = _opsAtLastPage is { } last ? (long)(last - _opsAtRunning) : null,
            RunOps = (long)(now - _opsAtRunning),
            RunMs = _time.GetElapsedTime(_runningAt).TotalMilliseconds,
        };
    }
}
