using System.Text.Json;
using System.Text.Json.Serialization;
using Weft.Contracts.Keys;

namespace Weft.NodeAgent.Control;

/// <summary>
/// What an agent keeps across restarts: its machine key (its identity to the coordinator), its node
/// key (and a next one while a rotation is in flight), the device it became, and the coordinator key
/// it first saw. The file holds private keys: it is created with mode 0600 and replaced atomically.
/// </summary>
public sealed record AgentState
{
    public required string MachinePrivateKey { get; init; }
    public required string NodePrivateKey { get; init; }
    /// <summary>The key a rotation is moving to, kept until the coordinator confirms it.</summary>
    public string? NextNodePrivateKey { get; init; }
    /// <summary>When the coordinator accepted the current node key (rotation is scheduled from it).</summary>
    public DateTimeOffset? NodeKeyIssuedAt { get; init; }
    public string? DeviceId { get; init; }
    public string? TailnetId { get; init; }
    /// <summary>The coordinator's public key (hex), pinned at first contact.</summary>
    public string? CoordinatorKey { get; init; }

    /// <summary>
    /// Members this version does not know, written by a later one (an agent downgraded, or rolled back):
    /// read past and written back as they were, so that the state still starts the daemon and the later
    /// version finds them again.
    /// </summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? LaterMembers { get; init; }

    /// <summary>Everything but the private keys, so that a log line or a debugger never shows them.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"MachinePrivateKey = (secret), NodePrivateKey = (secret), NextNodePrivateKey = {(NextNodePrivateKey is null ? "null" : "(secret)")}, ");
        builder.Append($"NodeKeyIssuedAt = {NodeKeyIssuedAt}, DeviceId = {DeviceId}, TailnetId = {TailnetId}, CoordinatorKey = {CoordinatorKey}");
        return true;
    }

    public static AgentState Fresh()
    {
        using var machine = Curve25519PrivateKey.Generate();
        using var node = Curve25519PrivateKey.Generate();
        return new AgentState { MachinePrivateKey = machine.ToHex(), NodePrivateKey = node.ToHex() };
    }
}

public sealed class AgentStateException(string message) : Exception(message);

public static class AgentStateFile
{
    public const string FileName = "agent-state.json";
    private const int MaxBytes = 64 * 1024;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The agent's state from <paramref name="directory"/>, or a fresh identity written there.</summary>
    public static AgentState LoadOrCreate(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (File.Exists(path)) return Load(path);
        Directory.CreateDirectory(directory);
        var fresh = AgentState.Fresh();
        Save(directory, fresh);
        return fresh;
    }

    public static AgentState Load(string path)
    {
        var state = PrivateFile.ReadJson<AgentState>(path, MaxBytes, Json, "an agent state file");
        Check(path, "machinePrivateKey", state.MachinePrivateKey);
        Check(path, "nodePrivateKey", state.NodePrivateKey);
        if (state.NextNodePrivateKey is not null) Check(path, "nextNodePrivateKey", state.NextNodePrivateKey);
        if (state.CoordinatorKey is not null && !Curve25519PublicKey.TryParseHex(state.CoordinatorKey, out _))
            throw new AgentStateException($"{path}: coordinatorKey is not 64 hex characters");
        return state;
    }

    /// <summary>Writes the state to a 0600 temporary file, flushes it, and renames it over the old one.</summary>
    public static void Save(string directory, AgentState state) =>
        PrivateFile.Replace(Path.Combine(directory, FileName), stream => JsonSerializer.Serialize(stream, state, Json));

    public static Curve25519PrivateKey Key(string hex) =>
        Curve25519PrivateKey.TryParseHex(hex, out var key) ? key : throw new AgentStateException("a private key in the agent state is not 64 hex characters");

    private static void Check(string path, string field, string? hex)
    {
        if (!Curve25519PrivateKey.TryParseHex(hex, out var key)) throw new AgentStateException($"{path}: {field} is not 64 hex characters");
        key.Dispose();
    }
}
