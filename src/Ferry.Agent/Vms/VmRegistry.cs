using System.Collections.Concurrent;
using Ferry.Agent.Api;
using Ferry.Vm.Machine;

namespace Ferry.Agent.Vms;

/// <summary>
/// The VMs this agent runs, and the ids and guest memory promised to migrations on their way in. A
/// VM being migrated out is marked so it cannot be deleted or migrated twice. An id is taken from
/// the moment an incoming offer is accepted (two sources sending VMs of one id: the second is
/// refused at its offer and keeps its VM — before, both completed and one VM was lost here), and
/// guest memory counts against the agent's budget from the same moment.
/// </summary>
public sealed class VmRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _vms = new(StringComparer.Ordinal);

    /// <summary>Incoming migrations' VM ids and their guest memory, from offer to arrival (or failure).</summary>
    private readonly Dictionary<string, long> _reserved = new(StringComparer.Ordinal);

    /// <summary>Guards the check-and-take of an id and of budget: creates, reservations and arrivals.</summary>
    private readonly Lock _admission = new();

    public VmRegistry(Hosting.AgentOptions options)
    {
        BudgetBytes = options.MemoryBudgetBytes;
    }

    /// <summary>Guest memory this agent may hold in all, VMs and incoming migrations together.</summary>
    public long BudgetBytes { get; }

    /// <summary>Guest memory of the VMs here plus what incoming migrations were promised.</summary>
    public long CommittedBytes
    {
        get
        {
            lock (_admission)
            {
                return Committed();
            }
        }
    }

    /// <summary>Summed when asked (a handful of VMs): nothing to keep in step on every add and remove. Under <see cref="_admission"/>.</summary>
    private long Committed() => _vms.Values.Sum(e => e.Vm.Memory.SizeBytes) + _reserved.Values.Sum();

    /// <summary>Whether a create or an incoming offer may have its id and memory, and if not, why.</summary>
    public enum AdmitResult
    {
        Admitted,
        IdTaken,
        IdArriving,
        OverBudget,
    }

    /// <summary>The refusal in words, for the API and the offer's refusal.</summary>
    public string Describe(AdmitResult result, string id, long memoryBytes) => result switch
    {
        AdmitResult.IdTaken => $"a VM with id '{id}' already runs on this agent",
        AdmitResult.IdArriving => $"a VM with id '{id}' is already migrating to this agent",
        AdmitResult.OverBudget => $"{Core.Units.UnitParser.FormatBytes(memoryBytes)} of guest memory does not fit this agent's budget: " +
            $"{Core.Units.UnitParser.FormatBytes(CommittedBytes)} of {Core.Units.UnitParser.FormatBytes(BudgetBytes)} taken",
        _ => "",
    };

    private AdmitResult CanAdmit(string id, long memoryBytes)
    {
        if (_vms.ContainsKey(id))
        {
            return AdmitResult.IdTaken;
        }
        if (_reserved.ContainsKey(id))
        {
            return AdmitResult.IdArriving;
        }
        return Committed() + memoryBytes > BudgetBytes ? AdmitResult.OverBudget : AdmitResult.Admitted;
    }

    /// <summary>Checks a create before its guest RAM is allocated: the id is free and the memory fits the budget.</summary>
    public AdmitResult CheckCreate(string id, long memoryBytes)
    {
        lock (_admission)
        {
            return CanAdmit(id, memoryBytes);
        }
    }

    /// <summary>Takes an id and its memory for a migration on its way in (at its offer).</summary>
    public AdmitResult TryReserve(string id, long memoryBytes)
    {
        lock (_admission)
        {
            AdmitResult r = CanAdmit(id, memoryBytes);
            if (r == AdmitResult.Admitted)
            {
                _reserved[id] = memoryBytes;
            }
            return r;
        }
    }

    /// <summary>Gives back an incoming migration's id and memory (it failed, or was refused after its offer).</summary>
    public void ReleaseReservation(string id)
    {
        lock (_admission)
        {
            _reserved.Remove(id);
        }
    }

    /// <summary>An incoming migration's VM arrived: it takes the place its offer reserved.</summary>
    public void AddArrived(VirtualMachine vm)
    {
        lock (_admission)
        {
            _reserved.Remove(vm.Id);
            if (!_vms.TryAdd(vm.Id, new Entry(vm)))
            {
                throw new InvalidOperationException($"VM id '{vm.Id}' arrived twice");
            }
        }
    }

    private sealed class Entry(VirtualMachine vm)
    {
        public VirtualMachine Vm { get; } = vm;
        public int Migrating;
        public string? Note;

        /// <summary>Left paused by a switchover the destination never confirmed: it may run there, so only a forced resume starts it here.</summary>
        public bool KeptPaused;
    }

    public int Count => _vms.Count;

    public bool Contains(string id) => _vms.ContainsKey(id);

    /// <summary>Adds a VM created here; refused (false) when its id was taken or its memory no longer fits, meanwhile.</summary>
    public bool TryAdd(VirtualMachine vm) => TryAdd(vm, out _);

    /// <summary>As <see cref="TryAdd(VirtualMachine)"/>, saying why when it is refused.</summary>
    public bool TryAdd(VirtualMachine vm, out AdmitResult why)
    {
        lock (_admission)
        {
            why = CanAdmit(vm.Id, vm.Memory.SizeBytes);
            return why == AdmitResult.Admitted && _vms.TryAdd(vm.Id, new Entry(vm));
        }
    }

    public VirtualMachine? Find(string id) => _vms.TryGetValue(id, out var e) ? e.Vm : null;

    public IEnumerable<VmView> List() => _vms.Values.OrderBy(e => e.Vm.Id, StringComparer.Ordinal).Select(View);

    public VmView? View(string id) => _vms.TryGetValue(id, out var e) ? View(e) : null;

    /// <summary>Marks a VM as leaving; false when it is absent or already leaving.</summary>
    public bool TryBeginMigration(string id, out VirtualMachine? vm)
    {
        vm = null;
        if (!_vms.TryGetValue(id, out var e) || Interlocked.CompareExchange(ref e.Migrating, 1, 0) != 0)
        {
            return false;
        }
        vm = e.Vm;
        return true;
    }

    public void EndMigration(string id, string? note = null, bool keptPaused = false)
    {
        if (_vms.TryGetValue(id, out var e))
        {
            e.Note = note;
            e.KeptPaused = keptPaused;
            Volatile.Write(ref e.Migrating, 0);
        }
    }

    /// <summary>Removes a VM that now lives elsewhere and frees it.</summary>
    public void RemoveMigrated(string id)
    {
        if (Remove(id) is { } e)
        {
            e.Vm.Dispose();
        }
    }

    private Entry? Remove(string id)
    {
        lock (_admission)
        {
            return _vms.TryRemove(id, out var e) ? e : null;
        }
    }

    public enum DeleteResult { Deleted, NotFound, Migrating }

    /// <summary>What a resume request found.</summary>
    public enum ResumeResult
    {
        Resumed,
        NotFound,
        Migrating,

        /// <summary>Not paused: nothing to resume.</summary>
        NotPaused,

        /// <summary>Kept paused after an unconfirmed switchover, and the request did not say force.</summary>
        NeedsForce,
    }

    /// <summary>
    /// Resumes a VM that an unconfirmed switchover left paused here. The destination may be running
    /// it, so this only happens with <paramref name="force"/>: the operator says the destination is gone.
    /// </summary>
    public ResumeResult Resume(string id, bool force)
    {
        if (!_vms.TryGetValue(id, out var e))
        {
            return ResumeResult.NotFound;
        }
        if (Interlocked.CompareExchange(ref e.Migrating, 1, 0) != 0)
        {
            return ResumeResult.Migrating;
        }
        try
        {
            if (e.Vm.State != VmRunState.Paused)
            {
                return ResumeResult.NotPaused;
            }
            if (e.KeptPaused && !force)
            {
                return ResumeResult.NeedsForce;
            }
            e.Vm.Resume();
            e.KeptPaused = false;
            e.Note = "resumed here by a forced resume after an unconfirmed switchover";
            return ResumeResult.Resumed;
        }
        finally
        {
            Volatile.Write(ref e.Migrating, 0);
        }
    }

    public DeleteResult Delete(string id)
    {
        if (!_vms.TryGetValue(id, out var e))
        {
            return DeleteResult.NotFound;
        }
        if (Interlocked.CompareExchange(ref e.Migrating, 1, 0) != 0)
        {
            return DeleteResult.Migrating;
        }
        Remove(id);
        e.Vm.Dispose();
        return DeleteResult.Deleted;
    }

    private static VmView View(Entry e)
    {
        VirtualMachine vm = e.Vm;
        var state = vm.State;
        return new VmView
        {
            Id = vm.Id,
            Name = vm.Config.Name,
            MemoryBytes = vm.Memory.SizeBytes,
            Vcpus = vm.Config.Vcpus,
            Workload = vm.Config.Workload,
            State = vm.Finished ? "finished" : state.ToString().ToLowerInvariant(),
            Migrating = Volatile.Read(ref e.Migrating) != 0,
            Ops = vm.TotalOps,
            OpsPerSecond = state == VmRunState.Running ? vm.OpsRate(TimeSpan.FromSeconds(1)).OpsPerSecond : 0,
            PopulatedPages = vm.Memory.PopulatedCount(),
            Note = e.Note,
        };
    }

    public void Dispose()
    {
        foreach (var id in _vms.Keys.ToArray())
        {
            if (_vms.TryRemove(id, out var e))
            {
                e.Vm.Dispose();
            }
        }
    }
}
