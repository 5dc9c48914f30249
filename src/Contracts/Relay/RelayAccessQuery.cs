using System.Text.Json;
using System.Text.Json.Serialization;

namespace Weft.Contracts.Relay;

/// <summary>
/// What a separate relay (<c>weft-relay --access-check-url</c>) asks a coordinator: do the node keys of these
/// tickets still have access? Sent as JSON to <see cref="Path"/> on the coordinator's API listener, at each
/// login and again for each live connection. No API key: the tickets are the credentials (each must carry
/// the cluster's signature), and they are the ones the relay's clients showed it.
/// </summary>
public sealed record RelayAccessQuery
{
    public const string Path = "/relay/access";

    /// <summary>Tickets per query; a relay with more connections asks in several.</summary>
    public const int MaxTickets = 128;

    /// <summary>The signed tickets (<see cref="RelayTicket.Signed"/>), base64 in JSON.</summary>
    [JsonPropertyName("tickets")] public required IReadOnlyList<byte[]> Tickets { get; init; }
}

/// <summary>
/// The coordinator's answer: for each ticket, in order, whether a device of its tailnet still holds its node key,
/// unexpired; null where the cluster could not tell in time (the tailnet's entity is moving to another node).
/// </summary>
public sealed record RelayAccessAnswer
{
    [JsonPropertyName("allowed")] public required IReadOnlyList<bool?> Allowed { get; init; }

    /// <summary>Parses an answer to a query of <paramref name="asked"/> tickets; anything else throws <see cref="FormatException"/>.</summary>
    public static RelayAccessAnswer Parse(ReadOnlySpan<byte> json, int asked)
    {
        RelayAccessAnswer? answer;
        try
        {
            answer = JsonSerializer.Deserialize<RelayAccessAnswer>(json);
        }
        catch (JsonException e)
        {
            throw new FormatException("the access answer is not valid JSON: " + e.Message);
        }
        if (answer?.Allowed is null) throw new FormatException("the access answer has no 'allowed' list");
        if (answer.Allowed.Count != asked) throw new FormatException($"the access answer has {answer.Allowed.Count} entries for {asked} tickets");
        return answer;
    }
}
