using System.Collections.Concurrent;
using Ferry.Agent.Api;
using Ferry.Vm.Machine;

namespace Ferry.Agent.Vms;

/// <summary>The VMs this agent runs. A VM being migrated out is marked so it cannot be deleted or migrated twice.</summary>
public sealed class VmRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _vms = new(StringComparer.Ordinal);

    private sealed class Entry(VirtualMachine vm)
    {
        public VirtualMachine Vm { get; } = vm;
        public int Migrating;
        public string? Note;
    }

    public int Count => _vms.Count;

    public bool Contains(string id) => _vms.ContainsKey(id);

    public bool TryAdd(VirtualMachine vm) => _vms.TryAdd(vm.Id, new Entry(vm));

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

    public void EndMigration(string id, string? note = null)
    {
        if (_vms.TryGetValue(id, out var e))
        {
            e.Note = note;
            Volatile.Write(ref e.Migrating, 0);
        }
    }

    /// <summary>Removes a VM that now lives elsewhere and frees it.</summary>
    public void RemoveMigrated(string id)
    {
        if (_vms.TryRemove(id, out var e))
        {
            e.Vm.Dispose();
        }
    }

    public enum DeleteResult { Deleted, NotFound, Migrating }

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
        _vms.TryRemove(id, out _);
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
