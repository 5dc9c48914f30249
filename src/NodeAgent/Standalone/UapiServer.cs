using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Standalone;

/// <summary>
/// The WireGuard cross-platform configuration protocol (UAPI) on <c>/var/run/wireguard/&lt;iface&gt;.sock</c>,
/// so that the real <c>wg</c> tool can show and set our engine as it does wireguard-go
/// (protocols.md §1.8). Each request is <c>get=1</c> or <c>set=1</c> followed by key=value lines and a
/// blank line; each reply ends with <c>errno=N</c> and a blank line.
/// </summary>
public sealed class UapiServer : IDisposable
{
    public const string DefaultDirectory = "/var/run/wireguard";
    private const int EINVAL = 22, EADDRINUSE = 98, EIO = 5;
    private static readonly TimeSpan ApplyTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The longest line a request may hold (a key, an endpoint or an allowed IP is far shorter).</summary>
    public const int MaxLineLength = 4096;

    /// <summary>The most lines one set request may hold: thousands of peers with their allowed IPs, and no more.</summary>
    public const int MaxLinesPerSet = 262_144;

    private readonly WireGuardDevice _device;
    private readonly IActorRef _supervisor;
    private readonly ILogger _log;
    private readonly UnixSocketServer _socket;

    public UapiServer(string interfaceName, WireGuardDevice device, IActorRef supervisor, ILogger log, string directory = DefaultDirectory)
    {
        _device = device;
        _supervisor = supervisor;
        _log = log;
        _socket = new UnixSocketServer(Path.Combine(directory, interfaceName + ".sock"),
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, Serve, log);
    }

    public string SocketPath => _socket.Path;

    private async Task Serve(Socket client, CancellationToken stop)
    {
        await using var stream = new NetworkStream(client, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n", AutoFlush = false };
        try
        {
            await ServeRequests(reader, writer, stop);
        }
        catch (InvalidDataException e)
        {
            _log.LogWarning("UAPI connection closed: {Reason}", e.Message);
        }
    }

    /// <summary>A connection may carry several operations; an unknown operation, or one too large, ends it.</summary>
    private async Task ServeRequests(StreamReader reader, StreamWriter writer, CancellationToken stop)
    {
        var line = new StringBuilder();
        while (await ReadBoundedLine(reader, line, stop) is { } operation)
        {
            switch (operation)
            {
                case "get=1":
                    if (await ReadBoundedLine(reader, line, stop) != "") return;
                    await writer.WriteAsync(Get());
                    await writer.WriteAsync("errno=0\n\n");
                    break;
                case "set=1":
                    var lines = new List<string>();
                    while (await ReadBoundedLine(reader, line, stop) is { Length: > 0 } next)
                    {
                        if (lines.Count == MaxLinesPerSet)
                        {
                            _log.LogWarning("UAPI set refused: more than {Max} lines", MaxLinesPerSet);
                            await writer.WriteAsync($"errno={-EINVAL}\n\n");
                            await writer.FlushAsync(stop);
                            return;
                        }
                        lines.Add(next);
                    }
                    var errno = await Set(lines);
                    await writer.WriteAsync($"errno={errno}\n\n");
                    break;
                default:
                    return;
            }
            await writer.FlushAsync(stop);
        }
    }

    /// <summary>The next line without its newline; null at the end of the stream. A line over <see cref="MaxLineLength"/> throws <see cref="InvalidDataException"/>.</summary>
    private static async Task<string?> ReadBoundedLine(StreamReader reader, StringBuilder line, CancellationToken stop)
    {
        line.Clear();
        var one = new char[1];
        while (await reader.ReadAsync(one.AsMemory(), stop) == 1)
        {
            if (one[0] == '\n') return line.ToString();
            if (line.Length == MaxLineLength) throw new InvalidDataException($"a line longer than {MaxLineLength} characters");
            line.Append(one[0]);
        }
        return line.Length > 0 ? line.ToString() : null;
    }

    /// <summary>The device dump, in wireguard-go's order.</summary>
    public string Get()
    {
        var text = new StringBuilder();
        if (_device.PrivateKey is { } key) text.Append("private_key=").Append(key.ToHex()).Append('\n');
        if (_device.ListenPort != 0) text.Append("listen_port=").Append(_device.ListenPort).Append('\n');
        if (_device.FirewallMark != 0) text.Append("fwmark=").Append(_device.FirewallMark).Append('\n');
        foreach (var peer in _device.Peers.Values)
        {
            text.Append("public_key=").Append(peer.PublicKey.ToHex()).Append('\n');
            text.Append("preshared_key=").Append(Convert.ToHexStringLower(peer.PresharedKey)).Append('\n');
            text.Append("protocol_version=1\n");
            if (peer.Endpoint is { } endpoint) text.Append("endpoint=").Append(endpoint.Address).Append('\n');
            var handshake = peer.LastHandshake;
            var seconds = handshake?.ToUnixTimeSeconds() ?? 0;
            var nanos = handshake is { } h ? (h.UtcTicks % TimeSpan.TicksPerSecond) * 100 : 0;
            text.Append("last_handshake_time_sec=").Append(seconds).Append('\n');
            text.Append("last_handshake_time_nsec=").Append(nanos).Append('\n');
            text.Append("tx_bytes=").Append(peer.TxBytes).Append('\n');
            text.Append("rx_bytes=").Append(peer.RxBytes).Append('\n');
            text.Append("persistent_keepalive_interval=").Append(peer.PersistentKeepaliveSeconds).Append('\n');
            foreach (var prefix in _device.AllowedIps.PrefixesOf(peer)) text.Append("allowed_ip=").Append(prefix).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Parses the whole request first, so that a bad line changes nothing; then applies it in order.</summary>
    public async Task<int> Set(IReadOnlyList<string> lines)
    {
        List<object> operations;
        try
        {
            operations = Parse(lines);
        }
        catch (FormatException e)
        {
            _log.LogWarning("UAPI set refused: {Reason}", e.Message);
            return -EINVAL;
        }

        foreach (var operation in operations)
        {
            try
            {
                switch (operation)
                {
                    case ListenPortChange change:
                        _device.Rebind(change.Port);
                        break;
                    case FirewallMarkChange mark:
                        _device.SetFirewallMark(mark.Mark);
                        break;
                    default:
                        await _supervisor.Ask<object>(operation, ApplyTimeout);
                        break;
                }
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                return -EADDRINUSE;
            }
            catch (Exception e)
            {
                _log.LogWarning(e, "UAPI set failed applying {Operation}", operation.GetType().Name);
                return -EIO;
            }
        }
        return 0;
    }

    private sealed record ListenPortChange(int Port);

    private sealed record FirewallMarkChange(uint Mark);

    internal static List<object> Parse(IReadOnlyList<string> lines)
    {
        var operations = new List<object>();
        PeerConfig? peer = null;
        var removePeer = false;
        var added = new List<IpPrefix>();
        var removed = new List<IpPrefix>();

        void FinishPeer()
        {
            if (peer is null) return;
            operations.Add(removePeer ? new RemovePeer(peer.PublicKey) : new ConfigurePeer(peer with { AddAllowedIps = added.ToList(), RemoveAllowedIps = removed.ToList() }));
            peer = null;
            removePeer = false;
            added.Clear();
            removed.Clear();
        }

        foreach (var line in lines)
        {
            var equals = line.IndexOf('=');
            if (equals <= 0) throw new FormatException($"not key=value: '{line}'");
            var key = line[..equals];
            var value = line[(equals + 1)..];

            if (peer is null && key != "public_key")
            {
                switch (key)
                {
                    case "private_key":
                        if (value.All(c => c == '0') && value.Length == 64) operations.Add(new SetPrivateKey(null));
                        else operations.Add(new SetPrivateKey(Curve25519PrivateKey.TryParseHex(value, out var privateKey) ? privateKey : throw new FormatException("private_key is not 64 hex characters")));
                        break;
                    case "listen_port":
                        operations.Add(new ListenPortChange(ushort.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) ? port : throw new FormatException($"listen_port '{value}'")));
                        break;
                    case "fwmark":
                        operations.Add(new FirewallMarkChange(uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var mark) ? mark : throw new FormatException($"fwmark '{value}'")));
                        break;
                    case "replace_peers":
                        if (value == "true") operations.Add(new ClearPeers());
                        else if (value != "false") throw new FormatException($"replace_peers '{value}'");
                        break;
                    default:
                        throw new FormatException($"unknown device key '{key}'");
                }
                continue;
            }

            switch (key)
            {
                case "public_key":
                    FinishPeer();
                    peer = new PeerConfig(Curve25519PublicKey.TryParseHex(value, out var publicKey) ? publicKey : throw new FormatException("public_key is not 64 hex characters"));
                    break;
                case "update_only":
                    peer = peer! with { UpdateOnly = value == "true" };
                    break;
                case "remove":
                    removePeer = value == "true";
                    break;
                case "preshared_key":
                    var psk = value.Length == 64 ? Convert.FromHexString(value) : throw new FormatException("preshared_key is not 64 hex characters");
                    peer = peer! with { PresharedKey = psk };
                    break;
                case "endpoint":
                    peer = peer! with { Endpoint = IPEndPoint.TryParse(value, out var endpoint) && endpoint.Port != 0 ? new Endpoint(endpoint) : throw new FormatException($"endpoint '{value}'") };
                    break;
                case "persistent_keepalive_interval":
                    peer = peer! with { PersistentKeepaliveSeconds = ushort.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) ? seconds : throw new FormatException($"persistent_keepalive_interval '{value}'") };
                    break;
                case "replace_allowed_ips":
                    peer = peer! with { ReplaceAllowedIps = value == "true" };
                    break;
                case "allowed_ip":
                    var remove = value.StartsWith('-');
                    var prefix = IpPrefix.TryParse(remove ? value[1..] : value, out var parsed) ? parsed : throw new FormatException($"allowed_ip '{value}'");
                    (remove ? removed : added).Add(prefix);
                    break;
                case "protocol_version":
                    if (value != "1") throw new FormatException($"protocol_version '{value}' (only 1 exists)");
                    break;
                default:
                    throw new FormatException($"unknown peer key '{key}'");
            }
        }
        FinishPeer();
        return operations;
    }

    public void Dispose() => _socket.Dispose();
}
