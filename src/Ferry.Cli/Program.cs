using System.CommandLine;
using Ferry.Cli.Commands;

namespace Ferry.Cli;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var root = new RootCommand("Ferry: live migration of virtual machines, real and simulated")
        {
            MigrateCommand.Create(),
            AgentCommand.Create(),
            CapabilitiesCommand.Create(),
            CertsCommand.Create(),
        };
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // One clear line and exit code 2, as for every wrong option or value.
            Console.Error.WriteLine($"ferry: {parse.Errors[0].Message} (see 'ferry --help')");
            return 2;
        }
        try
        {
            var invocation = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
            if (parse.CommandResult.Command == MigrateCommand.Command || parse.CommandResult.Command.Name == "agent")
            {
                // `ferry migrate` handles Ctrl+C itself: cancel the migration, wait for its end, write the report (Interrupt).
                // `ferry agent` stops gracefully: it waits (--shutdown-timeout) for migrations in progress before it exits.
                invocation.ProcessTerminationTimeout = null;
            }
            return await parse.InvokeAsync(invocation).ConfigureAwait(false);
        }
        catch (UsageException ex)
        {
            Console.Error.WriteLine($"ferry: {ex.Message}");
            return 2;
        }
    }
}
