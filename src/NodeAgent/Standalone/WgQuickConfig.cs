using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Standalone;

/// <summary>An address assigned to the interface: the host address keeps its bits (unlike an allowed-IP prefix).</summary>
public sealed record InterfaceAddress(IPAddress Address, int PrefixLength)
{
    public override string ToString() => $"{Address}/{PrefixLength}";
}

/// <summary>A line of a configuration file that could not be used; the message names the file and line.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>
/// A <c>wg-quick</c>-style configuration: <c>[Interface]</c> with PrivateKey, ListenPort, Address,
/// MTU and FwMark, then <c>[Peer]</c> sections with PublicKey, PresharedKey, Endpoint, AllowedIPs
/// and PersistentKeepalive. Keys are case-insensitive, <c>#</c> starts a comment. Anything else is
/// an error that names its line.
/// </summary>
public sealed class WgQuickConfig
{
    public required Curve25519PrivateKey PrivateKey { get; init; }
    public int ListenPort { get; init; }
    public IReadOnlyList<InterfaceAddress> Addresses { get; init; } = [];
    public int Mtu { get; init; } = Constants.DefaultMtu;
    public uint FirewallMark { get; init; }
    public IReadOnlyList<PeerConfig> Peers { get; init; } = [];

    // wg-quick hooks and settings we deliberately do not run: refuse them rather than ignore them silently.
    private static readonly HashSet<string> Unsupported = new(StringComparer.OrdinalIgnoreCase)
    {
        "DNS", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig",
    };

    public static WgQuickConfig Load(string path) => Parse(File.ReadAllText(path), Path.GetFileName(path));

    /// <param name="resolveHost">Resolves an Endpoint's host name (default: the system resolver); only called for a well-formed name.</param>
    public static WgQuickConfig Parse(string text, string source = "config", Func<string, IPAddress[]>? resolveHost = null)
    {
        Curve25519PrivateKey? privateKey = null;
        int? listenPort = null, mtu = null;
        uint? fwmark = null;
        var addresses = new List<InterfaceAddress>();
        var peers = new List<PeerConfig>();
        PeerBuilder? peer = null;
        string? section = null;
        var sawInterface = false;

        var lines = text.Split('\n');
        for (var number = 1; number <= lines.Length; number++)
        {
            var line = lines[number - 1];
            var hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            line = line.Trim();
            if (line.Length == 0) continue;
            ConfigException Error(string message) => new($"{source}:{number}: {message}");

            if (line.StartsWith('['))
            {
                section = line.ToLowerInvariant() switch
                {
                    "[interface]" => sawInterface ? throw Error("a second [Interface] section") : "interface",
                    "[peer]" => "peer",
                    _ => throw Error($"unknown section {line}; expected [Interface] or [Peer]"),
                };
                sawInterface |= section == "interface";
                if (peer is not null) peers.Add(peer.Build(source));
                peer = section == "peer" ? new PeerBuilder(number, resolveHost ?? System.Net.Dns.GetHostAddresses) : null;
                continue;
            }
            var equals = line.IndexOf('=');
            if (equals <= 0) throw Error($"expected 'Key = Value', got '{line}'");
            var key = line[..equals].Trim();
            var value = line[(equals + 1)..].Trim();
            if (section is null) throw Error($"'{key}' outside of a section");
            if (Unsupported.Contains(key)) throw Error($"'{key}' is a wg-quick setting that weft-agent does not support");
            if (value.Length == 0) throw Error($"'{key}' has no value");

            if (section == "interface")
            {
                switch (key.ToLowerInvariant())
                {
                    case "privatekey":
                        if (!Curve25519PrivateKey.TryParseBase64(value, out var parsed)) throw Error("PrivateKey is not a base64 WireGuard key (44 characters)");
                        privateKey = parsed;
                        break;
                    case "listenport":
                        listenPort = ParsePort(value) ?? throw Error($"ListenPort '{value}' is not a port number (0-65535)");
                        break;
                    case "address":
                        foreach (var item in SplitList(value))
                            addresses.Add(ParseAddress(item) ?? throw Error($"Address '{item}' is not an IP address with an optional /prefix"));
                        break;
                    case "mtu":
                        mtu = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var m) && m is >= 576 and <= 65535
                            ? m : throw Error($"MTU '{value}' must be a number between 576 and 65535");
                        break;
                    case "fwmark":
                        fwmark = value.Equals("off", StringComparison.OrdinalIgnoreCase) ? 0
                            : ParseUInt(value) ?? throw Error($"FwMark '{value}' is not a 32-bit number");
                        break;
                    default:
                        throw Error($"unknown key '{key}' in [Interface]");
                }
            }
            else
            {
                peer!.Set(key, value, Error);
            }
        }
        if (peer is not null) peers.Add(peer.Build(source));
        if (!sawInterface) throw new ConfigException($"{source}: no [Interface] section");
        if (privateKey is null) throw new ConfigException($"{source}: [Interface] has no PrivateKey");
        var duplicate = peers.GroupBy(p => p.PublicKey).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ConfigException($"{source}: peer {duplicate.Key} appears twice");

        return new WgQuickConfig
        {
            PrivateKey = privateKey,
            ListenPort = listenPort ?? 0,
            Addresses = addresses,
            Mtu = mtu ?? Constants.DefaultMtu,
            FirewallMark = fwmark ?? 0,
            Peers = peers,
        };
    }

    private static IEnumerable<string> SplitList(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int? ParsePort(string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535 ? port : null;

    private static uint? ParseUInt(string value) =>
        value.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.TryParse(value[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var hex) ? hex : null
            : uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var dec) ? dec : null;

    private static InterfaceAddress? ParseAddress(string text)
    {
        var slash = text.IndexOf('/');
        if (!IPAddress.TryParse(slash < 0 ? text : text[..slash], out var address)) return null;
        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var length = max;
        if (slash >= 0 && (!int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out length) || length > max)) return null;
        return new InterfaceAddress(address, length);
    }

    /// <summary>Resolves <c>host:port</c>, <c>[v6]:port</c> or <c>a.b.c.d:port</c>; null if it is none of these or the name does not resolve.</summary>
    internal static Endpoint? ParseEndpoint(string text, Func<string, IPAddress[]> resolveHost)
    {
        if (IPEndPoint.TryParse(text, out var direct) && direct.Port != 0 && (text.Contains(']') || text.Count(c => c == ':') == 1))
            return new Endpoint(direct);
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || ParsePort(text[(colon + 1)..]) is not { } port || port == 0) return null;
        var host = text[..colon];
        if (!IsHostName(host)) return null;
        try
        {
            var address = resolveHost(host).FirstOrDefault();
            return address is null ? null : new Endpoint(new IPEndPoint(address, port));
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>A DNS name as RFC 1123 allows it: at most 253 characters, labels of 1–63 letters, digits and inner hyphens.</summary>
    private static bool IsHostName(string host)
    {
        if (host.Length is 0 or > 253) return false;
        foreach (var label in host.TrimEnd('.').Split('.'))
        {
            if (label.Length is 0 or > Dns.DnsMessage.MaxLabelLength || label[0] == '-' || label[^1] == '-') return false;
            if (!label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')) return false;
        }
        return true;
    }

    private sealed class PeerBuilder(int startLine, Func<string, IPAddress[]> resolveHost)
    {
        private Curve25519PublicKey? _publicKey;
        private byte[]? _psk;
        private Endpoint? _endpoint;
        private int? _keepalive;
        private readonly List<IpPrefix> _allowed = new();

        public void Set(string key, string value, Func<string, ConfigException> error)
        {
            switch (key.ToLowerInvariant())
            {
                case "publickey":
                    _publicKey = Curve25519PublicKey.TryParseBase64(value, out var pub) ? pub : throw error("PublicKey is not a base64 WireGuard key (44 characters)");
                    break;
                case "presharedkey":
                    var psk = new byte[32];
                    if (value.Length != 44 || !Convert.TryFromBase64String(value, psk, out var written) || written != 32)
                        throw error("PresharedKey is not a base64 32-byte key (44 characters)");
                    _psk = psk;
                    break;
                case "endpoint":
                    _endpoint = ParseEndpoint(value, resolveHost) ?? throw error($"Endpoint '{value}' is not host:port, a.b.c.d:port or [v6]:port");
                    break;
                case "allowedips":
                    foreach (var item in SplitList(value))
                        _allowed.Add(IpPrefix.TryParse(item, out var prefix) ? prefix : throw error($"AllowedIPs entry '{item}' is not an IP prefix"));
                    break;
                case "persistentkeepalive":
                    _keepalive = value.Equals("off", StringComparison.OrdinalIgnoreCase) ? 0
                        : int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds <= 65535
                            ? seconds : throw error($"PersistentKeepalive '{value}' must be 0-65535 seconds or 'off'");
                    break;
                default:
                    throw error($"unknown key '{key}' in [Peer]");
            }
        }

        public PeerConfig Build(string source) =>
            new(_publicKey ?? throw new ConfigException($"{source}:{startLine}: [Peer] has no PublicKey"))
            {
                PresharedKey = _psk,
                Endpoint = _endpoint,
                PersistentKeepaliveSeconds = _keepalive,
                ReplaceAllowedIps = true,
                AddAllowedIps = _allowed,
            };
    }
}
