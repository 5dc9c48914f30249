using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Keys;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tunnels;

/// <summary>
/// Owns one WireGuard device's peers: applies configuration (one <see cref="PeerTunnel"/> child per
/// peer), and routes handshake messages. Initiations are decrypted here, because only after
/// decrypting do we know which peer sent them; responses go straight to the peer that is waiting.
/// A crashing PeerTunnel is restarted alone, and one that stops for good is started again; the others,
/// and every session's keys, are untouched.
/// <para>
/// The engine's peer table is the source of truth; this actor keeps no map of its own that the
/// engine does not also hold. When it (re)starts it gives every peer already in the engine its
/// PeerTunnel, and it reconciles a netmap against the engine's peers (each tagged with its netmap
/// device id), so a restart mid-flight orphans nothing and a later netmap still finds every peer.
/// </para>
/// </summary>
public sealed class TunnelSupervisor : UntypedActor
{
    private readonly WireGuardDevice _device;
    private readonly bool _tick;
    // The PeerTunnel of each engine peer (derived: rebuilt from the engine's peers on every start).
    private readonly Dictionary<Curve25519PublicKey, IActorRef> _tunnels = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    // Device id to name, for the log line when a peer leaves (the engine knows peers by key and id only).
    private readonly Dictionary<string, string> _names = new();
    // Numbers the tunnels this instance starts, so that no two children ever share a name.
    private long _incarnations;

    public TunnelSupervisor(WireGuardDevice device, bool tick)
    {
        _device = device;
        _tick = tick;
    }

    /// <param name="tick">False in tests that evaluate peer timers by hand.</param>
    public static Props PropsFor(WireGuardDevice device, bool tick = true) => Props.Create(() => new TunnelSupervisor(device, tick));

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: _ => Directive.Restart);

    protected override void PreStart()
    {
        var self = Self;
        _device.HandshakeSink = packet => self.Tell(packet);
        // After a restart the engine still holds every peer and its sessions: give each its tunnel again.
        foreach (var peer in _device.Peers.Values) TunnelFor(peer);
        if (_tunnels.Count > 0) _log.Info("Tunnels resumed for the {0} peer(s) the engine holds", _tunnels.Count);
    }

    /// <summary>
    /// A restart keeps the actor's reference and its mailbox, so the engine keeps handing it handshake
    /// messages: they wait in the mailbox for the new instance. Clearing the sink here (as the default,
    /// through <see cref="PostStop"/>, would) made the engine drop every initiation that arrived while
    /// the tunnels stopped and started again, and a peer tries again only after its 5 s rekey timeout.
    /// </summary>
    protected override void PreRestart(Exception reason, object message)
    {
        foreach (var child in Context.GetChildren())
        {
            Context.Unwatch(child);
            Context.Stop(child);
        }
    }

    /// <summary>Starts again from the engine's peers (<see cref="PreStart"/>), and asks its parent for what the failure may have cut short.</summary>
    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        Context.Parent.Tell(new TunnelsRestarted(reason.Message));
    }

    protected override void PostStop()
    {
        _device.HandshakeSink = null;
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case HandshakePacket packet:
                try { Route(packet); }
                finally { _device.HandshakeProcessed(packet); }
                break;
            case ConfigurePeer configure:
                Sender.Tell(Configure(configure.Config));
                break;
            case RemovePeer remove:
                Sender.Tell(new PeerRemoved(remove.PublicKey, Remove(remove.PublicKey)));
                break;
            case ClearPeers:
                var keys = _tunnels.Keys.ToList();
                foreach (var key in keys) Remove(key);
                Sender.Tell(new PeersCleared(keys.Count));
                break;
            case SetPrivateKey { Key: { } same } when _device.PrivateKey?.PublicKey == same.PublicKey:
                // The key the engine already holds (told again after a restart, behind the first telling): nothing to
                // change, and a second rekey of every peer would only cost each a handshake.
                same.Dispose();
                Sender.Tell(new PrivateKeySet());
                break;
            case SetPrivateKey set:
                var old = _device.PrivateKey;
                _device.SetPrivateKey(set.Key, keepSessions: set.Rotation);
                if (old is not null && !ReferenceEquals(old, set.Key)) old.Dispose();
                // A peer whose key is our own would be talking to itself (wireguard-go drops it).
                if (set.Key is not null && _tunnels.ContainsKey(set.Key.PublicKey)) Remove(set.Key.PublicKey);
                if (set.Rotation) foreach (var tunnel in _tunnels.Values) tunnel.Tell(Rekey.Instance);
                Sender.Tell(new PrivateKeySet());
                break;
            case ApplyMesh mesh:
                Sender.Tell(Apply(mesh));
                break;
            case GetTunnelStats:
                Sender.Tell(new TunnelStatsReply(_device.Peers.Values
                    .Select(p => new TunnelStats(p.PublicKey.ToHex(), p.Endpoint?.ToString(), p.LastHandshake, p.RxBytes, p.TxBytes)
                    {
                        Path = p.Endpoint is null ? "none" : p.Endpoint.IsRelay ? "relay" : "direct",
                        Mtu = _device.PathMtuOf(p),
                        Handshakes = p.HandshakesCompleted,
                    }).ToList()));
                break;
            case Rekey:
                foreach (var tunnel in _tunnels.Values) tunnel.Tell(Rekey.Instance);
                break;
            case MachineSlept slept:
                foreach (var tunnel in _tunnels.Values) tunnel.Tell(slept);
                break;
            case Terminated { ActorRef: var stopped }:
                OnTunnelStopped(stopped);
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void Route(HandshakePacket packet)
    {
        if (packet.Type == Messages.TypeInitiation)
        {
            if (_device.PrivateKey is not { } key || Handshake.ConsumeInitiation(key, packet.Message, _device.TryGetStaticStatic) is not { } initiation)
            {
                _device.Counters.Drop(DropReason.HandshakeRejected);
                return;
            }
            if (!_tunnels.TryGetValue(initiation.PeerKey, out var tunnel))
            {
                initiation.Noise.Dispose();
                _device.Counters.Drop(DropReason.HandshakeRejected); // a key we do not know: no reply at all
                return;
            }
            tunnel.Tell(new InitiationArrived(initiation, packet.Source));
            return;
        }

        var receiver = Messages.ReadIndex(packet.Message, Messages.ResponseReceiver);
        if (_device.Indices.TryGet(receiver, out var entry) && entry.Handshake is not null && _tunnels.TryGetValue(entry.Peer.PublicKey, out var owner))
            owner.Tell(new ResponseArrived(packet.Message, packet.Source));
        else
            _device.Counters.Drop(DropReason.UnexpectedHandshake);
    }

    private PeerConfigured Configure(PeerConfig config)
    {
        if (_device.PrivateKey is { } own && own.PublicKey == config.PublicKey) return new PeerConfigured(config.PublicKey, false);
        var exists = _device.Peers.TryGetValue(config.PublicKey, out var peer);
        if (!exists && config.UpdateOnly) return new PeerConfigured(config.PublicKey, false);
        peer ??= _device.AddPeer(config.PublicKey);

        if (config.PresharedKey is { } psk) peer.PresharedKey = psk;
        if (config.Endpoint is { } endpoint) peer.Endpoint = endpoint;
        if (config.ReplaceAllowedIps) _device.AllowedIps.RemoveAll(peer);
        foreach (var prefix in config.RemoveAllowedIps) _device.AllowedIps.Remove(prefix, peer);
        foreach (var prefix in config.AddAllowedIps) _device.AllowedIps.Insert(prefix, peer);
        var keepaliveOn = false;
        if (config.PersistentKeepaliveSeconds is { } keepalive)
        {
            keepaliveOn = keepalive > 0 && peer.PersistentKeepaliveSeconds != keepalive;
            peer.PersistentKeepaliveSeconds = keepalive;
        }

        var created = !_tunnels.ContainsKey(peer.PublicKey);
        var tunnel = TunnelFor(peer);
        if (!created && keepaliveOn) tunnel.Tell(new PeerSettingsChanged(true));
        return new PeerConfigured(peer.PublicKey, !exists);
    }

    /// <summary>
    /// The peer's tunnel, started if it has none. Each tunnel gets a name of its own (the key and an
    /// incarnation number): a stopped child keeps its name until it has terminated, and a key can leave
    /// and come back in one netmap (a device deleted, and its agent joined again with the same node key).
    /// Watched, so that one stopped by its own failures is noticed.
    /// </summary>
    private IActorRef TunnelFor(Peer peer)
    {
        if (_tunnels.TryGetValue(peer.PublicKey, out var tunnel)) return tunnel;
        tunnel = Context.ActorOf(PeerTunnel.PropsFor(_device, peer, _tick), $"peer-{peer.PublicKey.ToHex()[..16]}-{++_incarnations}");
        Context.Watch(tunnel);
        _tunnels[peer.PublicKey] = tunnel;
        return tunnel;
    }

    /// <summary>
    /// A tunnel this actor did not stop has stopped: it failed more often than the strategy restarts. Its
    /// peer is still in the engine and the netmap, and without a tunnel nobody would answer its handshakes
    /// or start ours: it gets a new one, which picks the peer's sessions and timers up where they are.
    /// </summary>
    private void OnTunnelStopped(IActorRef stopped)
    {
        foreach (var (key, tunnel) in _tunnels)
        {
            if (!tunnel.Equals(stopped)) continue;
            _tunnels.Remove(key);
            if (!_device.Peers.TryGetValue(key, out var peer)) return;
            _log.Warning("The tunnel of peer {0} stopped after repeated failures; starting it again", new NodeKey(key));
            TunnelFor(peer);
            return;
        }
    }

    private MeshApplied Apply(ApplyMesh mesh)
    {
        var peers = mesh.Peers;
        int added = 0, removed = 0, rekeyed = 0, updated = 0;
        var wanted = peers.Where(p => _device.PrivateKey is not { } own || own.PublicKey != p.Key)
            .GroupBy(p => p.Id).ToDictionary(g => g.Key, g => g.First());
        // What the engine holds for the netmap's devices; a key that changes under the same id is a rotation.
        // A patch of a few peers looks at those alone (a scan, without grouping every peer the engine holds).
        var held = _device.Peers.Values.Where(p => p.MeshId is not null && (!mesh.PeersOnly || wanted.ContainsKey(p.MeshId))).ToLookup(p => p.MeshId!);
        foreach (var group in held)
        {
            if (wanted.ContainsKey(group.Key)) continue; // a patch of a few peers holds only those: it removes nobody
            foreach (var gone in group)
            {
                if (!Remove(gone.PublicKey)) continue;
                removed++;
                _log.Info("Peer {0} left this device's netmap", _names.Remove(group.Key, out var name) ? name : group.Key);
            }
        }
        foreach (var peer in wanted.Values)
        {
            var previous = held[peer.Id].FirstOrDefault();
            if (previous is not null && previous.PublicKey != peer.Key && Rename(previous.PublicKey, peer.Key, peer.Name)) rekeyed++;
            if (peer.Name.Length > 0) _names[peer.Id] = peer.Name;
            var exists = _device.Peers.TryGetValue(peer.Key, out var current);
            var currentIps = exists ? _device.AllowedIps.PrefixesOf(current!).ToHashSet() : [];
            var endpoint = mesh.PathManaged
                ? current?.Endpoint ?? peer.Relay ?? MeshPeer.ChooseEndpoint(null, peer.Endpoints)
                : MeshPeer.ChooseEndpoint(current?.Endpoint, peer.Endpoints);
            var ipsChanged = !currentIps.SetEquals(peer.AllowedIps);
            if (!exists || ipsChanged || !Equals(endpoint, current!.Endpoint))
            {
                var configured = Configure(new PeerConfig(peer.Key)
                {
                    Endpoint = endpoint,
                    ReplaceAllowedIps = ipsChanged,
                    AddAllowedIps = ipsChanged ? peer.AllowedIps : [],
                });
                if (configured.Created)
                {
                    added++;
                    _log.Info("Peer {0} joined ({1})", peer.Name.Length > 0 ? peer.Name : peer.Id, new NodeKey(peer.Key));
                    if (mesh.Greet && _tunnels.TryGetValue(peer.Key, out var greeted)) greeted.Tell(HandshakeNeeded.Instance);
                }
                else updated++;
            }
            if (_device.Peers.TryGetValue(peer.Key, out var tagged))
            {
                tagged.MeshId = peer.Id;
                if (mesh.PathManaged) tagged.PathManaged = true;
            }
        }
        return new MeshApplied(added, removed, rekeyed, updated);
    }

    /// <summary>A peer rotated its node key: the same tunnel and sessions continue under the new key, and a handshake proves it.</summary>
    private bool Rename(Curve25519PublicKey from, Curve25519PublicKey to, string name)
    {
        if (!_device.Peers.TryGetValue(from, out var peer) || !_device.ChangePeerKey(peer, to)) return false;
        if (_tunnels.Remove(from, out var tunnel))
        {
            _tunnels[to] = tunnel;
            tunnel.Tell(Rekey.Instance);
        }
        _log.Info("Peer {0} rotated its node key from {1} to {2}", name, new NodeKey(from), new NodeKey(to));
        return true;
    }

    private bool Remove(Curve25519PublicKey key)
    {
        if (_tunnels.Remove(key, out var tunnel))
        {
            Context.Unwatch(tunnel);
            Context.Stop(tunnel);
        }
        if (!_device.Peers.TryGetValue(key, out var peer)) return false;
        _device.RemovePeer(peer);
        _log.Debug("Removed peer {0}", new NodeKey(key));
        return true;
    }
}
