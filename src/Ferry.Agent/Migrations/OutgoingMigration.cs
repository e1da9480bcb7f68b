using Ferry.Agent.Api;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;
using Ferry.Engine.Source;

namespace Ferry.Agent.Migrations;

/// <summary>One migration this agent sends: its state, live progress and, at the end, its report.</summary>
internal sealed class OutgoingMigration
{
    private volatile int _state = (int)OutgoingState.Connecting;

    public required string Id { get; init; }
    public required string VmId { get; init; }
    public required string Target { get; init; }
    public CancellationTokenSource Cancel { get; } = new();
    public SourceMigration? Session { get; set; }
    public MigrationReport? Report { get; set; }
    public string? Error { get; set; }
    public Thread? Thread { get; set; }

    public OutgoingState State
    {
        get => (OutgoingState)_state;
        set => _state = (int)value;
    }

    public bool IsFinished => State.IsFinished();

    /// <summary>"running" says too little once the link broke after switchover: the API shows the pause as a state of its own.</summary>
    public OutgoingState VisibleState => State == OutgoingState.Running && Session is { IsPostCopyPaused: true } ? OutgoingState.PostCopyPaused : State;

    public MigrationView View() => new()
    {
        Id = Id,
        VmId = VmId,
        Target = Target,
        State = VisibleState,
        Progress = Session?.Progress ?? new MigrationProgress(),
        Error = Error,
        Report = Report,
    };
}
