using System.Net;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Fuzz.Engine;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.WireGuard;

namespace Weft.Fuzz.Harnesses;

/// <summary>
/// Datagrams arriving at our WireGuard engine, from a peer with a live session. The first input byte
/// picks how deep the rest goes: as a raw datagram; as a handshake message carrying a valid mac1
/// (which reaches the Noise decryption); as the plaintext of a transport packet sealed with the
/// peer's real session key (which reaches the inner IP packet, allowed IPs and the packet filter);
/// or as a cookie reply for a live index.
/// </summary>
public sealed class WireGuardHarness : Harness, IDisposable
{
    private readonly ManualClock _clock = new();
    private readonly WireGuardDevice _device;
    private readonly Curve25519PrivateKey _ourKey = Curve25519PrivateKey.Generate();
    private readonly Peer _theirViewOfUs;
    private readonly Keypair _theirKeypair;
    private readonly byte[] _source = new Endpoint(new IPEndPoint(IPAddress.Parse("198.18.0.2"), 41641)).Sockaddr.ToArray();

    public WireGuardHarness()
    {
        var theirKey = Curve25519PrivateKey.Generate();
        _device = new WireGuardDevice(new VirtualTun(), UdpTransport.Bind(0), _clock);
        _device.SetPrivateKey(_ourKey);
        var ourViewOfThem = _device.AddPeer(theirKey.PublicKey);
        _device.AllowedIps.Insert(IpPrefix.Parse("100.64.0.2/32"), ourViewOfThem);
        _device.AllowedIps.Insert(IpPrefix.Parse("fd7a:115c:a1e0::2/128"), ourViewOfThem);
        var peerNode = new Node { Id = "dev_them", Addresses = { "100.64.0.2", "fd7a:115c:a1e0::2" } };
        _device.Filter = TrafficFilter.Compile(new PacketFilter
        {
            Rules = { new FilterRule { Sources = { "100.64.0.0/10", "fd7a:115c:a1e0::/48" }, Destinations = { "100.64.0.1/32", "fd7a:115c:a1e0::1/128" }, Ports = { new PortRange { First = 1, Last = 1024 } }, Protocols = { 1, 6, 17, 58 } } },
        }, [peerNode]);
        _device.HandshakeSink = Consume;

        // A real session: their initiation, our response, both keypairs.
        var theirIndices = new IndexTable();
        _theirViewOfUs = new Peer(_ourKey.PublicKey, theirIndices);
        var initiation = new byte[Messages.InitiationSize];
        var pending = Handshake.CreateInitiation(theirKey, _theirViewOfUs, theirIndices, _clock, initiation);
        var consumed = Handshake.ConsumeInitiation(_ourKey, initiation, _device.TryGetStaticStatic) ?? throw new InvalidOperationException("initiation refused");
        var response = new byte[Messages.ResponseSize];
        ourViewOfThem.InstallKeypair(Handshake.CreateResponse(consumed, ourViewOfThem, _device.Indices, _clock, response));
        theirIndices.TryGet(pending.LocalIndex, out var entry);
        _theirKeypair = Handshake.ConsumeResponse(pending, entry, response, _clock) ?? throw new InvalidOperationException("response refused");
    }

    public override string Name => "wireguard";

    public override int MaxInputBytes => 2048;

    public override IReadOnlyList<byte[]> Tokens => [[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0], [4, 0, 0, 0], [0x45, 0], [0x60, 0, 0, 0]];

    public override IEnumerable<byte[]> Seeds()
    {
        var initiation = new byte[Messages.InitiationSize];
        Handshake.CreateInitiation(Curve25519PrivateKey.Generate(), _theirViewOfUs, new IndexTable(), _clock, initiation);
        yield return [0, .. initiation];
        yield return [1, .. initiation[4..]];
        // TCP SYN and ICMP echo from the peer's address to ours.
        yield return [2, .. TestPacket(6, [0x04, 0x00, 0x00, 0x16, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x10, 0x00, 0, 0, 0, 0])];
        yield return [2, .. TestPacket(1, [8, 0, 0, 0, 0, 1, 0, 1])];
        yield return [2];
        yield return [3, .. new byte[Messages.CookieReplySize - 8]];
    }

    private static byte[] TestPacket(byte protocol, byte[] payload)
    {
        var packet = new byte[20 + payload.Length];
        packet[0] = 0x45;
        packet[2] = (byte)(packet.Length >> 8);
        packet[3] = (byte)packet.Length;
        packet[8] = 64;
        packet[9] = protocol;
        IPAddress.Parse("100.64.0.2").GetAddressBytes().CopyTo(packet, 12);
        IPAddress.Parse("100.64.0.1").GetAddressBytes().CopyTo(packet, 16);
        payload.CopyTo(packet, 20);
        return packet;
    }

    public override string Run(byte[] input)
    {
        if (input.Length == 0) return Deliver([]);
        var body = input.AsSpan(1);
        switch (input[0] % 4)
        {
            case 1:
            {
                var type = body.Length > 0 && (body[0] & 1) == 1 ? Messages.TypeResponse : Messages.TypeInitiation;
                var message = new byte[type == Messages.TypeInitiation ? Messages.InitiationSize : Messages.ResponseSize];
                body[..Math.Min(body.Length, message.Length - 4)].CopyTo(message.AsSpan(4));
                Messages.WriteHeader(message, type);
                _theirViewOfUs.Cookies.AddMacs(message, type, _clock.NowMs);
                return Deliver(message);
            }
            case 2:
            {
                var packet = new byte[Messages.TransportHeaderSize + body.Length + Messages.TagSize];
                Messages.WriteHeader(packet, Messages.TypeTransport);
                Messages.WriteIndex(packet, Messages.TransportReceiver, _theirKeypair.RemoteIndex);
                var counter = _theirKeypair.NextCounter();
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(packet.AsSpan(Messages.TransportCounter), counter);
                _theirKeypair.Seal(counter, body, packet.AsSpan(Messages.TransportHeaderSize));
                return Deliver(packet);
            }
            case 3:
            {
                var reply = new byte[Messages.CookieReplySize];
                body[..Math.Min(body.Length, reply.Length - 8)].CopyTo(reply.AsSpan(8));
                Messages.WriteHeader(reply, Messages.TypeCookieReply);
                Messages.WriteIndex(reply, Messages.CookieReceiver, _theirKeypair.RemoteIndex);
                return Deliver(reply);
            }
            default:
                return Deliver(body.ToArray());
        }
    }

    private string Deliver(byte[] datagram)
    {
        var before = _device.Counters.Snapshot();
        var inner = _device.ReceiveDatagram(datagram, _source, _clock.NowMs);
        _device.CheckQueuedHandshakes();
        if (inner > 0) return "delivered";
        var after = _device.Counters.Snapshot();
        var reason = after.Where(count => count.Value != before.GetValueOrDefault(count.Key)).Select(count => count.Key.ToString()).FirstOrDefault();
        return "dropped:" + (reason ?? "silently");
    }

    private void Consume(HandshakePacket packet)
    {
        try
        {
            if (packet.Type == Messages.TypeInitiation && _device.PrivateKey is { } key)
                Handshake.ConsumeInitiation(key, packet.Message, _device.TryGetStaticStatic)?.Noise.Dispose();
        }
        finally
        {
            _device.HandshakeProcessed(packet);
        }
    }

    public void Dispose() => _device.Dispose();
}
