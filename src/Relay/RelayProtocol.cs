using System.Text;

namespace Weft.Relay;

/// <summary>What the relay's one TCP port speaks before frames begin (see the README's "Relays").</summary>
public static class RelayProtocol
{
    public const string UpgradePath = "/relay";
    public const string UpgradeToken = "weft-relay";
    public const int MaxHttpHead = 8 * 1024;

    /// <summary>Reads an HTTP request or response head up to the blank line, byte by byte (so no frame byte is consumed).</summary>
    public static async Task<string> ReadHttpHeadAsync(Stream stream, CancellationToken cancel, byte[]? alreadyRead = null)
    {
        var head = new List<byte>(256);
        if (alreadyRead is not null) head.AddRange(alreadyRead);
        var one = new byte[1];
        while (!EndsWithBlankLine(head))
        {
            if (head.Count >= MaxHttpHead) throw new Contracts.Relay.RelayProtocolException("oversized_http_head", $"an HTTP head longer than {MaxHttpHead} bytes");
            if (await stream.ReadAsync(one, cancel) == 0) throw new Contracts.Relay.RelayProtocolException("truncated_http_head", "the connection ended inside the HTTP head");
            head.Add(one[0]);
        }
        return Encoding.ASCII.GetString(head.ToArray());
    }

    private static bool EndsWithBlankLine(List<byte> head) =>
        head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n';
}
