namespace Weft.Relay;

/// <summary>
/// Where a relay listens: host and TCP port, and whether the port speaks TLS. Written as
/// <c>host:port</c>, <c>tls://host:port</c> (or <c>tls+insecure://</c>, which skips certificate
/// checks; for tests with self-signed certificates only).
/// </summary>
public sealed record RelayNodeAddress(string Host, int Port, bool Tls = false, bool InsecureSkipVerify = false)
{
    public static RelayNodeAddress Parse(string text)
    {
        var tls = false;
        var insecure = false;
        var rest = text.Trim();
        if (rest.StartsWith("tls+insecure://", StringComparison.OrdinalIgnoreCase)) { tls = insecure = true; rest = rest["tls+insecure://".Length..]; }
        else if (rest.StartsWith("tls://", StringComparison.OrdinalIgnoreCase)) { tls = true; rest = rest["tls://".Length..]; }
        else if (rest.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase)) rest = rest["tcp://".Length..];
        var colon = rest.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(rest[(colon + 1)..], out var port) || port is < 1 or > 65535)
            throw new FormatException($"'{text}' is not a relay address (host:port, tls://host:port)");
        var host = rest[..colon].Trim('[', ']');
        return new RelayNodeAddress(host, port, tls, insecure);
    }

    public override string ToString() =>
        (Tls ? InsecureSkipVerify ? "tls+insecure://" : "tls://" : "") + (Host.Contains(':') ? $"[{Host}]" : Host) + ":" + Port;
}
