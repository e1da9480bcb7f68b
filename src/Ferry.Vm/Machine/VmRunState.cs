namespace Ferry.Vm.Machine;

public enum VmRunState { Created, Running, Paused, Stopped }
