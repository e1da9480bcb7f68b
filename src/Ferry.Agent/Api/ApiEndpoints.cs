using Ferry.Agent.Hosting;
using Ferry.Agent.Migrations;
using Ferry.Agent.Vms;
using Ferry.Core.Units;
using Ferry.Core.Workloads;
using Ferry.Vm.Machine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Api;

/// <summary>The control API (docs/agent-api.md). Errors are <c>{"error": "..."}</c> with 400/401/404/409.</summary>
internal static class ApiEndpoints
{
    public static void Map(IEndpointRouteBuilder app, string agentId)
    {
        var opts = AgentJson.Options;
        app.MapGet("/v1/info", (AgentEndpoints ep, VmRegistry vms) => Results.Json(new AgentInfo
        {
            AgentId = agentId,
            HostName = Environment.MachineName,
            Os = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            ProcessorCount = Environment.ProcessorCount,
            ApiEndpoint = ep.Api,
            MigrationEndpoint = ep.Migration,
            ProtocolVersion = Protocol.ProtocolVersion.Current,
            VmCount = vms.Count,
        }, opts));

        app.MapGet("/v1/vms", (VmRegistry vms) => Results.Json(vms.List().ToArray(), opts));

        app.MapPost("/v1/vms", (CreateVmRequest req, VmRegistry vms, AgentOptions options, AgentLifecycle lifecycle, ILogger<VmRegistry> logger) =>
        {
            if (lifecycle.ShuttingDown)
            {
                return Error(503, AgentLifecycle.ShuttingDownMessage);
            }
            VmConfig config;
            try
            {
                config = ToConfig(req, options);
            }
            catch (ArgumentException ex)
            {
                return Error(400, ex.Message);
            }
            VmRegistry.AdmitResult admit = vms.CheckCreate(config.Id, config.MemoryBytes);
            if (admit != VmRegistry.AdmitResult.Admitted)
            {
                return Error(admit == VmRegistry.AdmitResult.OverBudget ? 507 : 409, vms.Describe(admit, config.Id, config.MemoryBytes));
            }
            VirtualMachine vm;
            try
            {
                vm = VirtualMachine.Create(config);
            }
            catch (Exception ex) when (ex is Native.NativeCallException or OutOfMemoryException)
            {
                return Error(507, $"cannot allocate guest RAM: {ex.Message}");
            }
            if (!vms.TryAdd(vm, out admit))
            {
                // Another create or an incoming offer took the id or the memory while this one allocated.
                vm.Dispose();
                return Error(admit == VmRegistry.AdmitResult.OverBudget ? 507 : 409, vms.Describe(admit, config.Id, config.MemoryBytes));
            }
            vm.Start();
            Log.VmCreated(logger, vm.Id, vm.Memory.SizeBytes, config.Vcpus, config.Workload);
            return Results.Json(vms.View(vm.Id), opts, statusCode: 201);
        });

        app.MapGet("/v1/vms/{id}", (string id, VmRegistry vms) =>
            vms.View(id) is { } v ? Results.Json(v, opts) : Error(404, $"no VM '{id}' on this agent"));

        app.MapDelete("/v1/vms/{id}", (string id, VmRegistry vms) => vms.Delete(id) switch
        {
            VmRegistry.DeleteResult.Deleted => Results.NoContent(),
            VmRegistry.DeleteResult.Migrating => Error(409, $"VM '{id}' is being migrated; cancel the migration first"),
            _ => Error(404, $"no VM '{id}' on this agent"),
        });

        app.MapPost("/v1/vms/{id}/resume", (string id, bool? force, VmRegistry vms, ILogger<VmRegistry> logger) =>
        {
            VmRegistry.ResumeResult r = vms.Resume(id, force == true);
            switch (r)
            {
                case VmRegistry.ResumeResult.Resumed:
                    Log.VmForceResumed(logger, id, force == true);
                    return Results.Json(vms.View(id), opts, statusCode: 200);
                case VmRegistry.ResumeResult.NeedsForce:
                    return Error(409, $"VM '{id}' was kept paused because its switchover was not confirmed: the destination may be running it. " +
                        "If you know it does not (the destination is gone), resume it with ?force=true");
                case VmRegistry.ResumeResult.NotPaused:
                    return Error(409, $"VM '{id}' is not paused: nothing to resume");
                case VmRegistry.ResumeResult.Migrating:
                    return Error(409, $"VM '{id}' is being migrated; cancel the migration first");
                default:
                    return Error(404, $"no VM '{id}' on this agent");
            }
        });

        app.MapPost("/v1/migrations", (StartMigrationRequest req, MigrationManager migrations) =>
        {
            try
            {
                return Results.Json(migrations.Start(req), opts, statusCode: 202);
            }
            catch (AgentShuttingDownException ex)
            {
                return Error(503, ex.Message);
            }
            catch (KeyNotFoundException ex)
            {
                return Error(404, ex.Message);
            }
            catch (InvalidOperationException ex)
            {
                return Error(409, ex.Message);
            }
            catch (ArgumentException ex)
            {
                return Error(400, ex.Message);
            }
        });

        app.MapGet("/v1/migrations", (MigrationManager m) => Results.Json(m.List().ToArray(), opts));

        app.MapGet("/v1/migrations/{id}", (string id, MigrationManager m) =>
            m.Get(id) is { } v ? Results.Json(v, opts) : Error(404, $"no migration '{id}' on this agent"));

        app.MapPost("/v1/migrations/{id}/cancel", (string id, MigrationManager m) =>
            m.Cancel(id) is { } v ? Results.Json(v, opts, statusCode: 202) : Error(404, $"no migration '{id}' on this agent"));

        app.MapPost("/v1/migrations/{id}/resume", (string id, MigrationManager m) => m.Resume(id, out var view) switch
        {
            MigrationManager.ResumeResult.Resumed => Results.Json(view, opts, statusCode: 202),
            MigrationManager.ResumeResult.NotPaused => Error(409, $"migration '{id}' is {view!.State}, not post-copy paused: nothing to resume"),
            _ => Error(404, $"no migration '{id}' on this agent"),
        });

        app.MapGet("/v1/incoming", (MigrationListener l) => Results.Json(l.List().ToArray(), opts));
    }

    private static IResult Error(int status, string message) => Results.Json(new ErrorBody(message), AgentJson.Options, statusCode: status);

    private static VmConfig ToConfig(CreateVmRequest req, AgentOptions options)
    {
        if (!UnitParser.TryParseBytes(req.Memory, out long memory, out string err))
        {
            throw new ArgumentException("memory: " + err);
        }
        if (memory > options.MaxVmMemoryBytes)
        {
            throw new ArgumentException($"memory {UnitParser.FormatBytes(memory)} exceeds this agent's limit of {UnitParser.FormatBytes(options.MaxVmMemoryBytes)}");
        }
        if (!WorkloadSpec.TryParse(req.Workload, out var spec, out string werr))
        {
            throw new ArgumentException("workload: " + werr);
        }
        RamFill fill = req.Fill.ToLowerInvariant() switch
        {
            "none" => RamFill.None,
            "zero" => RamFill.Zero,
            "text" => RamFill.Text,
            "random" => RamFill.Random,
            "mix" => RamFill.Mix,
            _ => throw new ArgumentException($"fill '{req.Fill}' is not one of: none, zero, text, random, mix"),
        };
        var config = new VmConfig
        {
            Id = string.IsNullOrWhiteSpace(req.Id) ? "vm-" + Guid.NewGuid().ToString("n")[..8] : req.Id,
            Name = string.IsNullOrWhiteSpace(req.Name) ? "vm" : req.Name,
            MemoryBytes = memory,
            Vcpus = req.Vcpus,
            Workload = spec.ToString(),
            Fill = fill,
            OpsLimitPerVcpu = req.OpsLimitPerVcpu,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException ex) when (ex.ParamName is not null)
        {
            // The reason for people, without .NET's "(Parameter 'Id')".
            throw new ArgumentException(ex.Message.Split(" (Parameter")[0]);
        }
        return config;
    }
}
