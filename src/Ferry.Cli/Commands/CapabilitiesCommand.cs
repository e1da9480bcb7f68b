using System.CommandLine;
using Ferry.Native.Linux;
using Ferry.Vm.Tracking;

namespace Ferry.Cli.Commands;

/// <summary><c>ferry capabilities</c>: what this host's kernel offers Ferry, probed once, and which dirty log each choice means here.</summary>
internal static class CapabilitiesCommand
{
    public static Command Create()
    {
        var cmd = new Command("capabilities", "Show what this host offers: userfaultfd features, PAGEMAP_SCAN, and the dirty log each choice picks");
        cmd.SetAction(_ =>
        {
            HostCapabilities host = HostCapabilities.Current;
            Console.Out.Write(host.Describe());
            foreach (var choice in new[] { Core.Tracking.DirtyLogChoice.Auto, Core.Tracking.DirtyLogChoice.Kernel, Core.Tracking.DirtyLogChoice.Software })
            {
                string line;
                try
                {
                    line = DirtyLogFactory.Decide(choice, host).Reason;
                }
                catch (PlatformNotSupportedException ex)
                {
                    line = "error: " + ex.Message;
                }
                Console.Out.WriteLine($"--dirty-log {choice.ToString().ToLowerInvariant(),-8} → {line}");
            }
            foreach (var choice in new[] { Core.Migration.PageInstallChoice.Auto, Core.Migration.PageInstallChoice.Uffd, Core.Migration.PageInstallChoice.Copy })
            {
                string line;
                try
                {
                    line = Vm.Memory.PageInstallDecision.Decide(choice, host).Reason;
                }
                catch (PlatformNotSupportedException ex)
                {
                    line = "error: " + ex.Message;
                }
                Console.Out.WriteLine($"--page-install {choice.ToString().ToLowerInvariant(),-5} → {line}");
            }
            return 0;
        });
        return cmd;
    }
}
