using System.Text.Json;
using System.Text.Json.Serialization;

namespace Weft.Contracts.Relay;

/// <summary>
/// What a client tells the relay when it logs in (sealed to the server's key, so opening it proves
/// the client holds its node key). A node presents its <see cref="Ticket"/>; a relay meshing with
/// another presents the region's <see cref="MeshKey"/> instead.
/// </summary>
public sealed record ClientInfo
{
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    /// <summary>The cluster-signed <see cref="RelayTicket"/>.</summary>
    [JsonPropertyName("ticket")] public byte[]? Ticket { get; init; }
    /// <summary>64 hex characters; only relays of one region share it.</summary>
    [JsonPropertyName("meshKey")] public string? MeshKey { get; init; }
    [JsonPropertyName("canAckPings")] public bool CanAckPings { get; init; } = true;
}

/// <summary>The relay's answer to a successful login.</summary>
public sealed record ServerInfo
{
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    /// <summary>How long until the ticket runs out; the client reconnects with a fresh one before then.</summary>
    [JsonPropertyName("ticketExpiresUnix")] public long TicketExpiresUnix { get; init; }
}

public static class RelayLoginJson
{
    public static byte[] Serialize<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value);

    /// <summary>Parses a login body; a malformed one throws <see cref="RelayProtocolException"/>.</summary>
    public static T Parse<T>(ReadOnlySpan<byte> json) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json) ?? throw new RelayProtocolException("bad_login", "the login body is null");
        }
        catch (JsonException e)
        {
            throw new RelayProtocolException("bad_login", "the login body is not valid JSON: " + e.Message);
        }
    }
}
