using System.Diagnostics;
using Ferry.Core.Workloads;
using Ferry.Vm.Cpu;
using Ferry.Vm.Memory;
using Ferry.Vm.Programs;

namespace Ferry.Vm.Machine;

/// <summary>
/// A VM: guest RAM, vCPU register files and one thread per vCPU stepping the guest program.
/// Pause, resume and throttle take effect only between steps (VM exits), so a paused VM's
/// registers and RAM are a consistent snapshot.
/// </summary>
public sealed class VirtualMachine : IDisposable
{
    /// <summary>Ops per step cap: bounds how long a pause request waits for a step to end.</summary>
    private const int MaxStepOps = 512;

    /// <summary>A rate-limited vCPU may catch up at most this much lost time (no bursts after stalls).</summary>
    private static readonly double MaxCatchUpSeconds = 0.1;

    private readonly VcpuState[] _vcpus;
    private readonly Thread[] _threads;
    private readonly IGuestProgram _program;
    private readonly WorkloadSpec _spec;
    private readonly object _gate = new();
    private readonly OpsSampler _sampler;
    private VmRunState _state = VmRunState.Created;
    private bool _pauseRequested;
    private bool _stopRequested;
    private int _parked;
    private int _finished;
    private int _throttlePercent;
    private int _failedVcpus;
    private volatile GuestPageUnavailableException? _failure;

    private VirtualMachine(VmConfig config, GuestMemory memory, VcpuState[] vcpus)
    {
        Config = config;
        Memory = memory;
        _spec = WorkloadSpec.Parse(config.Workload);
        _program = GuestProgramFactory.Create(_spec);
        _vcpus = vcpus;
        _threads = new Thread[vcpus.Length];
        _sampler = new OpsSampler(() => (long)TotalOps);
    }

    public VmConfig Config { get; }

    public string Id => Config.Id;

    public GuestMemory Memory { get; }

    public WorkloadSpec Workload => _spec;

    public VmRunState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    /// <summary>Operations completed by all vCPUs since the VM was first created (survives migration).</summary>
    public ulong TotalOps
    {
        get
        {
            ulong sum = 0;
            for (int i = 0; i < _vcpus.Length; i++)
            {
                sum += Volatile.Read(ref _vcpus[i].Ops);
            }
            return sum;
        }
    }

    /// <summary>Why a vCPU stopped on its own (a post-copy page that never came), or null.</summary>
    public Exception? Failure => _failure;

    /// <summary>True when every vCPU reached its ops limit.</summary>
    public bool Finished => Volatile.Read(ref _finished) == _vcpus.Length;

    /// <summary>Builds a fresh VM: RAM filled as configured, registers initialised by the program. Not started.</summary>
    public static VirtualMachine Create(VmConfig config)
    {
        config.Validate();
        var memory = new GuestMemory(config.MemoryBytes);
        try
        {
            var spec = WorkloadSpec.Parse(config.Workload);
            RamFiller.Fill(memory, config.Fill, spec.Seed);
            var program = GuestProgramFactory.Create(spec);
            var vcpus = new VcpuState[config.Vcpus];
            for (int i = 0; i < vcpus.Length; i++)
            {
                program.Initialize(ref vcpus[i], i, vcpus.Length, memory.PageCount);
            }
            return new VirtualMachine(config, memory, vcpus);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    /// <summary>Builds a VM around RAM and registers received in a migration. Not started.</summary>
    public static VirtualMachine Restore(VmConfig config, GuestMemory memory, VcpuState[] vcpus)
    {
        config.Validate();
        if (vcpus.Length != config.Vcpus)
        {
            throw new ArgumentException($"expected {config.Vcpus} vCPU states, got {vcpus.Length}", nameof(vcpus));
        }
        if (memory.SizeBytes != Core.Paging.PageSize.PagesFor(config.MemoryBytes) * Core.Paging.PageSize.Bytes)
        {
            throw new ArgumentException("memory size does not match the config", nameof(memory));
        }
        return new VirtualMachine(config, memory, vcpus);
    }

    public void Start()
    {
        lock (_gate)
        {
            if (_state != VmRunState.Created)
            {
                throw new InvalidOperationException($"VM {Id} cannot start from state {_state}");
            }
            _state = VmRunState.Running;
        }
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i;
            _threads[i] = new Thread(() => RunVcpu(index)) { IsBackground = true, Name = $"vcpu{i}:{Id}" };
            _threads[i].Start();
        }
    }

    /// <summary>Stops all vCPUs at their next step boundary and returns once they are parked.</summary>
    public void Pause()
    {
        lock (_gate)
        {
            if (_state != VmRunState.Running)
            {
                throw new InvalidOperationException($"VM {Id} cannot pause from state {_state}");
            }
            _pauseRequested = true;
            Monitor.PulseAll(_gate);
            while (_parked + _finished + _failedVcpus < _vcpus.Length)
            {
                Monitor.Wait(_gate);
            }
            _state = VmRunState.Paused;
        }
    }

    public void Resume()
    {
        lock (_gate)
        {
            if (_state != VmRunState.Paused)
            {
                throw new InvalidOperationException($"VM {Id} cannot resume from state {_state}");
            }
            _pauseRequested = false;
            _state = VmRunState.Running;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Slows the vCPUs: they sleep <paramref name="percent"/> % of the time (0 = full speed).</summary>
    public void Throttle(int percent)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(percent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 99);
        Volatile.Write(ref _throttlePercent, percent);
    }

    public int ThrottlePercent => Volatile.Read(ref _throttlePercent);

    /// <summary>Copies of the register files; only meaningful while paused or stopped.</summary>
    public VcpuState[] SnapshotVcpus()
    {
        lock (_gate)
        {
            if (_state == VmRunState.Running)
            {
                throw new InvalidOperationException($"VM {Id} must be paused to snapshot its vCPUs");
            }
            return (VcpuState[])_vcpus.Clone();
        }
    }

    /// <summary>Throughput over the recent window (see <see cref="OpsSampler"/>).</summary>
    public (double OpsPerSecond, TimeSpan Covered) OpsRate(TimeSpan window) => _sampler.RateOver(window);

    /// <summary>Ends the vCPU threads for good. Idempotent.</summary>
    public void Stop()
    {
        lock (_gate)
        {
            if (_state == VmRunState.Stopped)
            {
                return;
            }
            _stopRequested = true;
            _state = VmRunState.Stopped;
            Monitor.PulseAll(_gate);
        }
        foreach (Thread t in _threads)
        {
            if (t is not null && t != Thread.CurrentThread)
            {
                t.Join();
            }
        }
    }

    /// <summary>Waits (bounded) until every vCPU reached its ops limit.</summary>
    public bool WaitFinished(TimeSpan timeout)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        lock (_gate)
        {
            while (_finished < _vcpus.Length)
            {
                if (_failure is not null)
                {
                    return false;
                }
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    return false;
                }
                Monitor.Wait(_gate, TimeSpan.FromSeconds(Math.Min(1, left / (double)Stopwatch.Frequency)));
            }
            return true;
        }
    }

    private void RunVcpu(int index)
    {
        try
        {
            RunVcpuSteps(index);
        }
        catch (GuestPageUnavailableException ex)
        {
            // A post-copy page will never arrive: this vCPU cannot go on. Record why and leave,
            // so Pause and Stop still complete; the migration reports the failure.
            lock (_gate)
            {
                _failure ??= ex;
                _failedVcpus++;
                Monitor.PulseAll(_gate);
            }
        }
    }

    private void RunVcpuSteps(int index)
    {
        ref VcpuState state = ref _vcpus[index];
        long? limit = Config.OpsLimitPerVcpu;
        double ratePerVcpu = _spec.Rate > 0 ? _spec.Rate / (double)_vcpus.Length : 0;
        long paceStart = Stopwatch.GetTimestamp();
        double paceOps = 0;
        while (true)
        {
            if (!WaitIfPaused(ref paceStart, ref paceOps))
            {
                return;
            }
            if (limit is { } l && (long)state.Ops >= l)
            {
                lock (_gate)
                {
                    _finished++;
                    Monitor.PulseAll(_gate);
                    while (!_stopRequested)
                    {
                        Monitor.Wait(_gate);
                    }
                }
                return;
            }
            if (_program.IsIdle)
            {
                Sleep(TimeSpan.FromMilliseconds(20));
                continue;
            }
            int budget = MaxStepOps;
            if (ratePerVcpu > 0)
            {
                double elapsed = (Stopwatch.GetTimestamp() - paceStart) / (double)Stopwatch.Frequency;
                double allowed = ratePerVcpu * elapsed - paceOps;
                if (allowed > ratePerVcpu * MaxCatchUpSeconds)
                {
                    // Forgive time lost to stalls beyond the catch-up window: no burst afterwards.
                    paceOps = ratePerVcpu * elapsed - ratePerVcpu * MaxCatchUpSeconds;
                    allowed = ratePerVcpu * MaxCatchUpSeconds;
                }
                if (allowed < 1)
                {
                    Sleep(TimeSpan.FromSeconds(Math.Clamp((1 - allowed) / ratePerVcpu, 0.0005, 0.01)));
                    continue;
                }
                budget = (int)Math.Min(budget, allowed);
            }
            if (limit is { } lim)
            {
                budget = (int)Math.Min(budget, lim - (long)state.Ops);
            }
            long t0 = Stopwatch.GetTimestamp();
            int done = _program.Step(ref state, Memory, budget);
            paceOps += done;
            int throttle = Volatile.Read(ref _throttlePercent);
            if (throttle > 0)
            {
                double busy = (Stopwatch.GetTimestamp() - t0) / (double)Stopwatch.Frequency;
                Sleep(TimeSpan.FromSeconds(Math.Min(0.05, busy * throttle / (100.0 - throttle))));
            }
        }
    }

    /// <summary>Parks the calling vCPU while a pause is requested. Returns false when the VM stops.</summary>
    private bool WaitIfPaused(ref long paceStart, ref double paceOps)
    {
        if (!Volatile.Read(ref _pauseRequested) && !Volatile.Read(ref _stopRequested))
        {
            return true;
        }
        lock (_gate)
        {
            if (_stopRequested)
            {
                return false;
            }
            if (!_pauseRequested)
            {
                return true;
            }
            _parked++;
            Monitor.PulseAll(_gate);
            while (_pauseRequested && !_stopRequested)
            {
                Monitor.Wait(_gate);
            }
            _parked--;
            if (_stopRequested)
            {
                return false;
            }
        }
        // A paused VM does not owe the time it was paused.
        paceStart = Stopwatch.GetTimestamp();
        paceOps = 0;
        return true;
    }

    private void Sleep(TimeSpan t)
    {
        lock (_gate)
        {
            if (!_pauseRequested && !_stopRequested)
            {
                Monitor.Wait(_gate, t);
            }
        }
    }

    public void Dispose()
    {
        Stop();
        _sampler.Dispose();
        Memory.Dispose();
    }
}
