using Google.Protobuf;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>
/// Where the agent keeps its last netmap, so that a restart while no coordinator answers still
/// brings the tunnels up (the data plane outlives the control plane, as in Tailscale).
/// </summary>
public interface INetMapCache
{
    /// <summary>The cached map, or null if there is none or it cannot be read (a damaged cache is ignored, never fatal).</summary>
    NetMap? Load();

    void Save(NetMap map);

    void Delete();

    /// <summary>
    /// The relay map and ticket the coordinator last gave, or null (none, or it cannot be read). Kept so
    /// that an agent restarted while no coordinator answers still reaches its relays: without them, every
    /// peer behind a NAT answers into a relay this agent is not connected to.
    /// </summary>
    RelayAccessChanged? LoadRelayAccess() => null;

    void SaveRelayAccess(RelayAccessChanged access) { }

    void DeleteRelayAccess() { }
}

/// <summary>The netmap as protobuf in <c>netmap.pb</c> next to the agent state, mode 0600, replaced atomically.</summary>
public sealed class FileNetMapCache(string directory) : INetMapCache
{
    public const string FileName = "netmap.pb";
    /// <summary>A netmap of thousands of peers is a few MB; anything far beyond is not ours.</summary>
    private const long MaxBytes = 64L << 20;

    public string Path { get; } = System.IO.Path.Combine(directory, FileName);

    public NetMap? Load()
    {
        try
        {
            var info = new FileInfo(Path);
            if (!info.Exists || info.Length > MaxBytes) return null;
            var map = NetMap.Parser.ParseFrom(File.ReadAllBytes(Path));
            return map.Self is null ? null : map;
        }
        catch (Exception e) when (e is IOException or InvalidProtocolBufferException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public void Save(NetMap map) => PrivateFile.Replace(Path, map.WriteTo);

    public void Delete()
    {
        try { File.Delete(Path); } catch (IOException) { }
    }

    public const string RelayAccessFileName = "relay-access.json";
    private const int MaxRelayAccessBytes = 1 << 20;

    public string RelayAccessPath { get; } = System.IO.Path.Combine(directory, RelayAccessFileName);

    private static readonly System.Text.Json.JsonSerializerOptions RelayAccessJson = new(System.Text.Json.JsonSerializerDefaults.Web);

    /// <summary>What <c>relay-access.json</c> holds: the coordinator's host, and its relay update (map, ticket, expiry) as protobuf.</summary>
    private sealed record StoredRelayAccess(string ControlHost, byte[] Update);

    public RelayAccessChanged? LoadRelayAccess()
    {
        try
        {
            var info = new FileInfo(RelayAccessPath);
            if (!info.Exists || info.Length > MaxRelayAccessBytes) return null;
            var stored = System.Text.Json.JsonSerializer.Deserialize<StoredRelayAccess>(File.ReadAllBytes(RelayAccessPath), RelayAccessJson);
            if (stored?.Update is not { Length: > 0 } bytes || stored.ControlHost is null) return null;
            var update = RelayUpdate.Parser.ParseFrom(bytes);
            if (update.Map is null || update.Ticket.IsEmpty) return null;
            return new RelayAccessChanged(update.Map, update.Ticket.ToByteArray(), update.TicketExpiry?.ToDateTimeOffset() ?? DateTimeOffset.MaxValue, stored.ControlHost);
        }
        catch (Exception)
        {
            return null; // a cache at best: whatever is wrong with it (a timestamp out of range included), the coordinator gives it again
        }
    }

    public void SaveRelayAccess(RelayAccessChanged access)
    {
        var update = new RelayUpdate { Map = access.Map, Ticket = ByteString.CopyFrom(access.Ticket) };
        if (access.TicketExpiry != DateTimeOffset.MaxValue) update.TicketExpiry = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(access.TicketExpiry);
        var stored = new StoredRelayAccess(access.ControlHost, update.ToByteArray());
        PrivateFile.Replace(RelayAccessPath, stream => System.Text.Json.JsonSerializer.Serialize(stream, stored, RelayAccessJson));
    }

    public void DeleteRelayAccess()
    {
        try { File.Delete(RelayAccessPath); } catch (IOException) { }
    }
}
