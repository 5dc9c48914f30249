namespace Weft.NodeAgent.Control;

/// <summary>Where a ControlClient keeps its <see cref="AgentState"/>.</summary>
public interface IAgentStateStore
{
    AgentState Load();

    void Save(AgentState state);
}

/// <summary>The real agent's store: <see cref="AgentStateFile"/> in a directory, mode 0600.</summary>
public sealed class FileAgentStateStore(string directory) : IAgentStateStore
{
    public string Directory { get; } = directory;

    public AgentState Load() => AgentStateFile.LoadOrCreate(Directory);

    public void Save(AgentState state) => AgentStateFile.Save(Directory, state);
}

/// <summary>For simulated agents (benchmarks, load tests): the state lives as long as the process.</summary>
public sealed class MemoryAgentStateStore : IAgentStateStore
{
    private AgentState _state = AgentState.Fresh();

    public AgentState Load() => _state;

    public void Save(AgentState state) => _state = state;
}
