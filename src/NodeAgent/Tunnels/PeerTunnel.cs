using Akka.Actor;
using Akka.Event;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tunnels;

/// <summary>
/// One peer's WireGuard session state machine (wireguard-go timers.go and the handshake half of
/// noise-protocol.go): it sends initiations and retransmits them, answers initiations, completes
/// handshakes, installs keypairs, and runs the keepalive, rekey and key-zeroing timers. The packet
/// path never passes through here; it only signals "handshake needed" and "keypair confirmed".
/// A crash restarts this actor without touching the peer's keypairs, so traffic keeps flowing.
/// </summary>
public sealed class PeerTunnel : UntypedActor, IWithTimers
{
    private const long RetryPastDueMs = 100;

    private readonly WireGuardDevice _device;
    private readonly Peer _peer;
    private readonly bool _tick;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly byte[] _message = new byte[Messages.InitiationSize];

    private PendingHandshake? _pending;
    private long _retransmitAt;
    private int _attempts;
    private long _zeroKeysAt;
    private int _newHandshakeJitterMs;

    public PeerTunnel(WireGuardDevice device, Peer peer, bool tick)
    {
        _device = device;
        _peer = peer;
        _tick = tick;
        _newHandshakeJitterMs = PeerTimers.Jitter(device.Timings);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="tick">False in tests that drive <see cref="EvaluateTimers"/> by hand with a manual clock.</param>
    public static Props PropsFor(WireGuardDevice device, Peer peer, bool tick = true) =>
        Props.Create(() => new PeerTunnel(device, peer, tick));

    private long Now => _device.Clock.NowMs;

    private WireGuardTimings Timings => _device.Timings;

    protected override void PreStart()
    {
        _peer.Signals = new TunnelSignals(Self);
        _peer.HandshakeRequestHandled();
        // Packets staged before the signals were ours (the tunnel was just created, or restarted)
        // asked for a handshake nobody heard: start it now.
        if (_peer.StagedCount > 0) Self.Tell(HandshakeNeeded.Instance);
        // The key-zeroing deadline was counted from the newest session's handshake, which the keypairs
        // still carry: without it, a restarted tunnel of an idle peer would keep its keys until the next handshake.
        if (NewestKeypairCreatedMs() is { } created) _zeroKeysAt = created + (long)Timings.ZeroKeyMaterialAfter.TotalMilliseconds;
        // Whatever the stamps say now (after a restart, sessions may be mid-way): arm for the earliest.
        Rearm();
        if (_peer.PersistentKeepaliveSeconds > 0) Self.Tell(new PeerSettingsChanged(true));
    }

    protected override void PostStop()
    {
        DiscardPending();
    }

    private long? NewestKeypairCreatedMs()
    {
        long? newest = null;
        foreach (var keypair in new[] { _peer.Current, _peer.Next, _peer.Previous })
            if (keypair is { IsDisposed: false } && (newest is null || keypair.CreatedMs > newest)) newest = keypair.CreatedMs;
        return newest;
    }

    /// <summary>
    /// Every message may change what is armed (a handshake sent, a session installed, a timer
    /// fired): afterwards the single timer is set for the earliest deadline, or cancelled. Nothing
    /// polls: an idle peer has no timer at all, and the packet path wakes the tunnel when a timer
    /// starts (<see cref="Peer"/>'s TimersStarted signal).
    /// </summary>
    protected override void OnReceive(object message)
    {
        Handle(message);
        Rearm();
    }

    private TimerState TimerStateNow() => new(_retransmitAt, _zeroKeysAt, _peer.FirstUnansweredDataReceived, _peer.FirstUnansweredDataSent,
        _newHandshakeJitterMs, _peer.LastAuthenticatedSent, _peer.LastAuthenticatedReceived, _peer.PersistentKeepaliveSeconds);

    private void Rearm()
    {
        if (!_tick) return; // tests drive EvaluateTimers by hand
        var next = PeerTimers.NextDue(TimerStateNow(), Timings);
        if (next is null)
        {
            _peer.DisarmTimers();
            // A timer may have started between the check and the disarm: look once more (see Peer.WakeTimers).
            next = PeerTimers.NextDue(TimerStateNow(), Timings);
            if (next is null)
            {
                Timers.Cancel("timers");
                return;
            }
        }
        _peer.TimersArmed(next.Value);
        // Already past (an action that could not be taken, e.g. no endpoint yet): try again shortly, not in a tight loop.
        var delay = next.Value - Now;
        Timers.StartSingleTimer("timers", EvaluateTimers.Instance, TimeSpan.FromMilliseconds(delay > 0 ? delay : RetryPastDueMs));
    }

    private void Handle(object message)
    {
        switch (message)
        {
            case HandshakeNeeded:
                _peer.HandshakeRequestHandled();
                SendInitiation(isRetry: false);
                break;
            case Rekey:
                _peer.LastHandshakeSent = 0;
                SendInitiation(isRetry: false);
                break;
            case MachineSlept slept:
                if (_peer.Current is { } session && session.AgeMs(Now) + slept.Slept.TotalMilliseconds >= Timings.RejectAfterTime.TotalMilliseconds)
                {
                    _zeroKeysAt = 0;
                    _peer.ZeroKeypairs();
                    DiscardPending();
                }
                // The rate limit's clock stood still too: the next handshake goes at once.
                if (slept.Slept >= Timings.RekeyTimeout) _peer.LastHandshakeSent = 0;
                break;
            case InitiationArrived arrived:
                OnInitiation(arrived);
                break;
            case ResponseArrived arrived:
                OnResponse(arrived);
                break;
            case EndpointMoved:
                // An initiation in flight went to the old path (perhaps a guess that leads nowhere): send a
                // new one along the new path now rather than after the 5 s retransmit timer.
                if (_pending is not null || (_peer.Current is null && _peer.StagedCount > 0))
                {
                    _peer.LastHandshakeSent = 0;
                    SendInitiation(isRetry: true);
                }
                break;
            case KeypairConfirmed:
                HandshakeComplete();
                if (_peer.StagedCount > 0) _device.SendStagedOrKeepalive(_peer);
                break;
            case EvaluateTimers or TimersStarted:
                OnTimers();
                break;
            case PeerSettingsChanged { PersistentKeepaliveTurnedOn: true }:
                SendKeepalive();
                break;
            case PeerSettingsChanged:
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>wireguard-go SendHandshakeInitiation: at most one initiation per REKEY_TIMEOUT.</summary>
    private void SendInitiation(bool isRetry)
    {
        if (_device.PrivateKey is not { } staticKey || _peer.Endpoint is null) return;
        if (!isRetry) _attempts = 0;
        var now = Now;
        if (now - _peer.LastHandshakeSent < Timings.RekeyTimeout.TotalMilliseconds)
        {
            // An initiation went out less than REKEY_TIMEOUT ago, and its retransmission is armed, unless this
            // actor started since (a restart: its predecessor's handshake went with it, and an answer to it is
            // dropped). Then packets wait with nothing to send the next one: it goes when the limit allows.
            if (_pending is null && _retransmitAt == 0 && _peer.StagedCount > 0)
                _retransmitAt = _peer.LastHandshakeSent + (long)Timings.RekeyTimeout.TotalMilliseconds + PeerTimers.Jitter(Timings);
            return;
        }
        _peer.LastHandshakeSent = now;

        DiscardPending();
        try
        {
            _pending = Handshake.CreateInitiation(staticKey, _peer, _device.Indices, _device.Clock, _message);
        }
        catch (InvalidOperationException e)
        {
            _log.Warning("Cannot start a handshake with {0}: {1}", _peer, e.Message);
            return;
        }
        _device.SendHandshakeMessage(_peer, _message.AsSpan(0, Messages.InitiationSize));
        _retransmitAt = now + (long)Timings.RekeyTimeout.TotalMilliseconds + PeerTimers.Jitter(Timings);
    }

    private void OnInitiation(InitiationArrived arrived)
    {
        var initiation = arrived.Initiation;
        var now = Now;
        // Replay protection: the timestamp must grow; flood protection: at most one per 20 ms.
        var replayed = _peer.LastInitiationTimestamp is { } last && !Tai64n.IsAfter(initiation.Timestamp, last);
        var flood = now - _peer.LastInitiationConsumed <= Constants.HandshakeInitiationRate.TotalMilliseconds;
        if (replayed || flood)
        {
            initiation.Noise.Dispose();
            _device.Counters.Drop(DropReason.HandshakeRejected);
            return;
        }
        _peer.LastInitiationTimestamp = initiation.Timestamp;
        _peer.LastInitiationConsumed = now;
        AdoptEndpoint(arrived.Source);
        _peer.OnAuthenticatedReceived(now, Messages.InitiationSize);

        Keypair keypair;
        try
        {
            keypair = Handshake.CreateResponse(initiation, _peer, _device.Indices, _device.Clock, _message);
        }
        catch (InvalidOperationException)
        {
            initiation.Noise.Dispose();
            _device.Counters.Drop(DropReason.HandshakeRejected);
            return;
        }
        _peer.InstallKeypair(keypair);
        _zeroKeysAt = now + (long)Timings.ZeroKeyMaterialAfter.TotalMilliseconds;
        _device.SendHandshakeMessage(_peer, _message.AsSpan(0, Messages.ResponseSize));
    }

    private void OnResponse(ResponseArrived arrived)
    {
        var receiver = Messages.ReadIndex(arrived.Message, Messages.ResponseReceiver);
        if (_pending is null || _pending.LocalIndex != receiver || !_device.Indices.TryGet(receiver, out var entry))
        {
            _device.Counters.Drop(DropReason.UnexpectedHandshake);
            return;
        }
        var keypair = Handshake.ConsumeResponse(_pending, entry, arrived.Message, _device.Clock);
        if (keypair is null)
        {
            _device.Counters.Drop(DropReason.UnexpectedHandshake);
            return;
        }
        _pending = null;
        var now = Now;
        AdoptEndpoint(arrived.Source);
        _peer.OnAuthenticatedReceived(now, Messages.ResponseSize);
        _peer.InstallKeypair(keypair);
        _zeroKeysAt = now + (long)Timings.ZeroKeyMaterialAfter.TotalMilliseconds;
        HandshakeComplete();
        // The initiator confirms the new keypair at once: with staged data, or with a keepalive.
        _device.SendStagedOrKeepalive(_peer);
    }

    /// <summary>A handshake's source becomes the endpoint (WireGuard roaming), unless a PathFinder chooses this peer's path.</summary>
    private void AdoptEndpoint(Endpoint source)
    {
        if (!_peer.PathManaged || _peer.Endpoint is null) _peer.Endpoint = source;
    }

    private void HandshakeComplete()
    {
        _retransmitAt = 0;
        _attempts = 0;
        _peer.LastHandshake = _device.Clock.WallNow;
        _peer.CountHandshake();
    }

    private void OnTimers()
    {
        var now = Now;
        var due = PeerTimers.Due(TimerStateNow(), now, Timings);
        if (due == TimerActions.None) return;

        if (due.HasFlag(TimerActions.RetransmitHandshake))
        {
            _retransmitAt = 0;
            if (_attempts > Timings.MaxTimerHandshakes)
            {
                // Give up (wireguard-go expiredRetransmitHandshake): drop waiting packets, stop keepalives, zero keys later.
                _log.Debug("Handshake for {0} did not complete after {1} attempts", _peer, _attempts + 1);
                _peer.ClearUnansweredDataReceived();
                _peer.ClearStaged();
                DiscardPending();
                if (_zeroKeysAt == 0) _zeroKeysAt = now + (long)Timings.ZeroKeyMaterialAfter.TotalMilliseconds;
            }
            else
            {
                _attempts++;
                SendInitiation(isRetry: true);
            }
        }
        if (due.HasFlag(TimerActions.PassiveKeepalive))
        {
            _peer.ClearUnansweredDataReceived();
            _device.SendTransport(_peer, default);
        }
        if (due.HasFlag(TimerActions.NewHandshake))
        {
            // Data went out 15 s ago and nothing came back: the peer may have lost its session.
            _peer.ClearUnansweredDataSent();
            _newHandshakeJitterMs = PeerTimers.Jitter(Timings);
            SendInitiation(isRetry: false);
        }
        if (due.HasFlag(TimerActions.ZeroKeyMaterial))
        {
            _zeroKeysAt = 0;
            _peer.ZeroKeypairs();
            DiscardPending();
        }
        if (due.HasFlag(TimerActions.PersistentKeepalive)) SendKeepalive();
    }

    /// <summary>A keepalive needs a session: without one, it starts a handshake instead (wireguard-go SendKeepalive).</summary>
    private void SendKeepalive()
    {
        if (!_device.SendTransport(_peer, default)) SendInitiation(isRetry: false);
    }

    private void DiscardPending()
    {
        if (_pending is null) return;
        _device.Indices.Remove(_pending.LocalIndex);
        _pending.Dispose();
        _pending = null;
    }

    private sealed class TunnelSignals(IActorRef tunnel) : IPeerSignals
    {
        public void HandshakeNeeded(Peer peer) => tunnel.Tell(Tunnels.HandshakeNeeded.Instance);

        public void KeypairConfirmed(Peer peer) => tunnel.Tell(Tunnels.KeypairConfirmed.Instance);

        public void EndpointMoved(Peer peer) => tunnel.Tell(Tunnels.EndpointMoved.Instance);

        public void TimersStarted(Peer peer) => tunnel.Tell(Tunnels.TimersStarted.Instance);
    }
}
