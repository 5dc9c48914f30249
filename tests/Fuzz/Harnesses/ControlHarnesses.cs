using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.Fuzz.Engine;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Filter;
using Weft.NodeAgent.Tunnels;

namespace Weft.Fuzz.Harnesses;

/// <summary>The coordinator's side of the Noise IK handshake: an initiation from anyone on the internet.</summary>
public sealed class ControlHandshakeHarness : Harness
{
    private readonly Curve25519PrivateKey _coordinator = Curve25519PrivateKey.Generate();
    private readonly Curve25519PrivateKey _machine = Curve25519PrivateKey.Generate();
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);

    public override string Name => "control-handshake";

    public override int MaxInputBytes => 4096;

    public override IEnumerable<byte[]> Seeds()
    {
        using var initiator = ControlInitiator.Begin(_machine, _coordinator.PublicKey, Now);
        yield return initiator.Initiation;
        using var stale = ControlInitiator.Begin(_machine, _coordinator.PublicKey, Now.AddHours(-1));
        yield return stale.Initiation;
        yield return new byte[ControlProtocol.InitiationSize];
    }

    public override string Run(byte[] input)
    {
        var accepted = ControlResponder.Accept(_coordinator, input, Now, out var refusal);
        if (accepted is null) return "refused:" + refusal;
        accepted.Transport.Dispose();
        return "accepted";
    }
}

/// <summary>
/// A frame after a completed handshake, at the coordinator: first the raw frame (which must fail to
/// authenticate), then the same bytes sealed by a genuine agent and parsed as a ClientMessage, as
/// the control service does before the session sees it.
/// </summary>
public sealed class ControlFrameHarness : Harness
{
    private readonly ControlTransport _agent;
    private readonly ControlTransport _coordinator;

    public ControlFrameHarness()
    {
        var coordinatorKey = Curve25519PrivateKey.Generate();
        var now = DateTimeOffset.UtcNow;
        using var initiator = ControlInitiator.Begin(Curve25519PrivateKey.Generate(), coordinatorKey.PublicKey, now);
        var accepted = ControlResponder.Accept(coordinatorKey, initiator.Initiation, now, out _) ?? throw new InvalidOperationException("handshake failed");
        _coordinator = accepted.Transport;
        _agent = initiator.Complete(accepted.Response) ?? throw new InvalidOperationException("handshake response refused");
    }

    public override string Name => "control-frame";

    public override int MaxInputBytes => ControlProtocol.MaxClientMessageSize;

    public override IEnumerable<byte[]> Seeds()
    {
        yield return new ClientMessage { Register = new RegisterRequest { NodeKey = ByteString.CopyFrom(new byte[32]), Hostname = "web", Tailnet = "acme", AuthKey = "weft-auth.tn_1.k1.secret" } }.ToByteArray();
        yield return new ClientMessage { Subscribe = new Subscribe { LastVersion = 42 } }.ToByteArray();
        yield return new ClientMessage { Endpoints = new EndpointUpdate { Endpoints = { "198.18.0.1:41641", "[fd7a:115c:a1e0::1]:41641" } } }.ToByteArray();
        yield return new ClientMessage { Ping = new Ping { Nonce = 7 } }.ToByteArray();
        yield return new ClientMessage { Logout = new Logout() }.ToByteArray();
    }

    public override string Run(byte[] input)
    {
        if (_coordinator.Open(input) is not null) return "forged frame opened"; // cannot happen unless the AEAD is broken
        var plaintext = _coordinator.Open(_agent.Seal(input)) ?? throw new InvalidOperationException("a genuine frame did not open");
        try
        {
            var message = ClientMessage.Parser.ParseFrom(plaintext);
            return "parsed:" + message.BodyCase;
        }
        catch (InvalidProtocolBufferException e)
        {
            return Refused(e);
        }
    }
}

/// <summary>
/// What the coordinator sends, at the agent: the ServerMessage, the netmap session that orders full
/// maps and deltas, and what the agent builds from the result (tunnel peers, packet filter, addresses).
/// </summary>
public sealed class AgentNetMapHarness : Harness
{
    private readonly NetMapSession _session = new(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10));
    private readonly TimeSpan _now = TimeSpan.FromHours(30); // a reading of the monotonic clock

    public override string Name => "agent-netmap";

    public override IEnumerable<byte[]> Seeds()
    {
        var peer = new Node
        {
            Id = "dev_peer", Name = "db", NodeKey = ByteString.CopyFrom(Curve25519PrivateKey.Generate().PublicKey.ToArray()),
            Addresses = { "100.64.0.2", "fd7a:115c:a1e0::2" }, AllowedIps = { "100.64.0.2/32", "fd7a:115c:a1e0::2/128" },
            Endpoints = { "198.18.0.2:41641" },
        };
        var self = new Node { Id = "dev_self", Name = "web", Addresses = { "100.64.0.1", "fd7a:115c:a1e0::1" } };
        var filter = new PacketFilter { Rules = { new FilterRule { Sources = { "*", "tag:db", "100.64.0.0/10" }, Destinations = { "100.64.0.1/32" }, Ports = { new PortRange { First = 22, Last = 443 } }, Protocols = { 6, 17 } } } };
        yield return new ServerMessage { Netmap = new NetMap { Version = 1, Self = self, Peers = { peer }, Filter = filter, TailnetId = "tn_1" } }.ToByteArray();
        yield return new ServerMessage { Delta = new NetMapDelta { BaseVersion = 1, Version = 2, PeersChanged = { peer }, PeersRemoved = { "dev_gone" } } }.ToByteArray();
        yield return new ServerMessage { UpToDate = new UpToDate { Version = 2 } }.ToByteArray();
        yield return new ServerMessage { Error = new Error { Code = "x", Message = "y" } }.ToByteArray();
    }

    public override string Run(byte[] input)
    {
        ServerMessage message;
        try
        {
            message = ServerMessage.Parser.ParseFrom(input);
        }
        catch (InvalidProtocolBufferException e)
        {
            return Refused(e);
        }
        var step = message.BodyCase switch
        {
            ServerMessage.BodyOneofCase.Netmap => _session.OnNetMap(message.Netmap, _now),
            ServerMessage.BodyOneofCase.Delta => _session.OnDelta(message.Delta, _now),
            ServerMessage.BodyOneofCase.UpToDate => _session.OnUpToDate(message.UpToDate.Version, _now),
            _ => MapStep.None,
        };
        var view = _session.Store.View;
        var peers = view.Peers.Values.Select(n => MeshPeer.FromNode(n)).Count(p => p is not null);
        var filter = TrafficFilter.Compile(view.Filter, view.Peers.Values);
        var addresses = view.Self is { } self ? NodeAddresses.Of(self).Count() : 0;
        if (_session.Store.PeerCount > 2000) _session.Forget();
        return $"{message.BodyCase}:{step.Applied}:{step.SubscribeFrom is not null}:{peers > 0}:{addresses}:{filter == TrafficFilter.DenyAll}";
    }
}
