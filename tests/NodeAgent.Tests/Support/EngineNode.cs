using System.Net;
using Akka.Actor;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>A complete WireGuard engine for tests: virtual TUN, real UDP socket on loopback, and its TunnelSupervisor.</summary>
public sealed class EngineNode : IDisposable
{
    /// <param name="restartable">Run the supervisor under a parent that restarts it when it fails (as the agent's DataPlane does).</param>
    /// <param name="wrapTun">Puts something between the device and its TUN (a <see cref="FaultyTun"/>); <see cref="Tun"/> stays the virtual TUN.</param>
    public EngineNode(ActorSystem system, string name, EngineClock? clock = null, WireGuardTimings? timings = null, bool tick = true, bool restartable = false,
        Func<VirtualTun, ITunDevice>? wrapTun = null)
    {
        Key = Curve25519PrivateKey.Generate();
        Tun = new VirtualTun(name);
        Device = new WireGuardDevice(wrapTun?.Invoke(Tun) ?? Tun, UdpTransport.Bind(0), clock, timings);
        var props = TunnelSupervisor.PropsFor(Device, tick);
        Supervisor = restartable
            ? system.ActorOf(RestartingParent.PropsFor(props, "tunnels"), name).Ask<IActorRef>(RestartingParent.GetChild.Instance, TimeSpan.FromSeconds(5)).GetAwaiter().GetResult()
            : system.ActorOf(props, name);
        Supervisor.Ask<PrivateKeySet>(new SetPrivateKey(Key), TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
        Device.Start();
    }

    public Curve25519PrivateKey Key { get; }

    public VirtualTun Tun { get; }

    public WireGuardDevice Device { get; }

    public IActorRef Supervisor { get; }

    public Endpoint Endpoint => new(new IPEndPoint(IPAddress.Loopback, Device.ListenPort));

    public Peer PeerOf(EngineNode other) => Device.Peers[other.Key.PublicKey];

    /// <summary>The PeerTunnel actor this node runs for <paramref name="other"/> (whichever incarnation: its name ends in its number).</summary>
    public ActorSelection TunnelFor(EngineNode other) => TunnelFor(other.Key.PublicKey);

    /// <summary>The PeerTunnel actor this node runs for the peer of <paramref name="key"/>.</summary>
    public ActorSelection TunnelFor(Curve25519PublicKey key) => new(Supervisor, $"peer-{key.ToHex()[..16]}*");

    /// <summary>Makes a peer of an arbitrary key at an arbitrary endpoint (for peers that never answer).</summary>
    public void TrustKey(Curve25519PublicKey key, Endpoint endpoint, params string[] allowedIps)
    {
        var config = new PeerConfig(key) { Endpoint = endpoint, AddAllowedIps = allowedIps.Select(IpPrefix.Parse).ToList() };
        Supervisor.Ask<PeerConfigured>(new ConfigurePeer(config), TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
    }

    /// <summary>Makes <paramref name="other"/> a peer of this node, owning <paramref name="allowedIps"/>.</summary>
    public void Trust(EngineNode other, params string[] allowedIps) => Trust(other, null, allowedIps);

    public void Trust(EngineNode other, byte[]? psk, params string[] allowedIps)
    {
        var config = new PeerConfig(other.Key.PublicKey)
        {
            Endpoint = other.Endpoint,
            AddAllowedIps = allowedIps.Select(IpPrefix.Parse).ToList(),
            PresharedKey = psk,
        };
        Supervisor.Ask<PeerConfigured>(new ConfigurePeer(config), TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
    }

    /// <summary>Waits for the next packet this node's TUN delivers to the host.</summary>
    public byte[] Receive(TimeSpan? timeout = null)
    {
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        return Tun.Delivered.ReadAsync(cancel.Token).AsTask().GetAwaiter().GetResult();
    }

    public bool TryReceive(TimeSpan within, out byte[] packet)
    {
        try
        {
            packet = Receive(within);
            return true;
        }
        catch (OperationCanceledException)
        {
            packet = [];
            return false;
        }
    }

    public void Dispose()
    {
        Device.Dispose();
    }
}

/// <summary>A parent that restarts its one child whatever it fails with (even <see cref="Kill"/>), and hands out the child's reference.</summary>
public sealed class RestartingParent : ReceiveActor
{
    public sealed class GetChild
    {
        public static readonly GetChild Instance = new();
    }

    public RestartingParent(Props child, string name)
    {
        var created = Context.ActorOf(child, name);
        Receive<GetChild>(_ => Sender.Tell(created));
    }

    public static Props PropsFor(Props child, string name) => Props.Create(() => new RestartingParent(child, name));

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(_ => Directive.Restart);
}
