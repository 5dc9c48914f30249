namespace Weft.Cluster.Control;

/// <summary>
/// Back-pressure for reconnect storms. When a coordinator node dies, every agent it served dials the
/// others at once; each new stream costs a Noise handshake and a session, each registration a few
/// journal writes. This node admits them at a bounded rate (a token bucket per kind) and tells the
/// agents it turns away how long to wait, so the storm spreads out instead of timing out.
/// </summary>
public sealed class ControlAdmission
{
    private readonly TokenBucket _connects;
    private readonly TokenBucket _registrations;
    private readonly PerSourceBuckets<System.Net.IPAddress> _connectsPerAddress;
    private readonly PerSourceBuckets<System.Net.IPAddress> _registrationsPerAddress;
    private readonly PerSourceBuckets<string> _registrationsPerKey;
    private readonly PerSourceBuckets<string> _handshakesPerMachine;
    private readonly PerSourceBuckets<string>[] _requestsPerDevice;
    private readonly Weft.Relay.HeldPerAddress _pendingHandshakes;

    public ControlAdmission(ControlSettings settings, TimeProvider clock)
    {
        _connects = new TokenBucket(settings.ConnectsPerSecond, settings.ConnectsPerSecond * 2, clock);
        _registrations = new TokenBucket(settings.RegistrationsPerSecond, settings.RegistrationsPerSecond * 2, clock);
        _pendingHandshakes = new Weft.Relay.HeldPerAddress(settings.MaxPendingHandshakes, Math.Max(1, settings.MaxPendingHandshakes / 10));
        _connectsPerAddress = new PerSourceBuckets<System.Net.IPAddress>(settings.ConnectsPerSecondPerAddress, clock);
        _registrationsPerAddress = new PerSourceBuckets<System.Net.IPAddress>(settings.ConnectsPerSecondPerAddress, clock);
        _registrationsPerKey = new PerSourceBuckets<string>(settings.RegistrationsPerSecondPerAuthKey, clock);
        _handshakesPerMachine = new PerSourceBuckets<string>(settings.HandshakesPerSecondPerMachine, clock);
        _requestsPerDevice = new PerSourceBuckets<string>[Enum.GetValues<DeviceRequest>().Length];
        _requestsPerDevice[(int)DeviceRequest.Endpoints] = new(settings.EndpointReportsPerSecondPerDevice, clock);
        _requestsPerDevice[(int)DeviceRequest.Hostinfo] = Budget(settings.HostinfoReportsPerMinutePerDevice, TimeSpan.FromMinutes(1), clock);
        _requestsPerDevice[(int)DeviceRequest.Subscribe] = Budget(settings.SubscribesPerMinutePerDevice, TimeSpan.FromMinutes(1), clock);
        _requestsPerDevice[(int)DeviceRequest.NodeKeyRotation] = Budget(settings.NodeKeyRotationsPerHourPerDevice, TimeSpan.FromHours(1), clock);
        _requestsPerDevice[(int)DeviceRequest.Registration] = Budget(settings.RegistrationsPerMinutePerDevice, TimeSpan.FromMinutes(1), clock);
    }

    /// <summary>A budget of so many per period, all of them at once if it was not used for a period.</summary>
    private static PerSourceBuckets<string> Budget(double count, TimeSpan period, TimeProvider clock) => new(count / period.TotalSeconds, clock, burst: count);

    /// <summary>
    /// One of a device's requests on its stream, against that device's budget of its kind (keyed by machine key,
    /// so a reconnect does not refill it). False: the caller holds the request for <paramref name="retryAfterMs"/>.
    /// </summary>
    public bool TryAdmitFromDevice(string machineKey, DeviceRequest request, out uint retryAfterMs) =>
        _requestsPerDevice[(int)request].TryTake(machineKey, out retryAfterMs);

    /// <summary>The same for one source address: one host (or one NAT) may not take the whole node's rate.</summary>
    public bool TryAdmitConnectFrom(System.Net.IPAddress? address, out uint retryAfterMs) => _connectsPerAddress.TryTake(SourceOf(address), out retryAfterMs);

    /// <summary>
    /// Registrations from one source address, at the same rate as its new streams: a stream may send
    /// Register again and again, and each costs journal writes.
    /// </summary>
    public bool TryAdmitRegistrationFrom(System.Net.IPAddress? address, out uint retryAfterMs) => _registrationsPerAddress.TryTake(SourceOf(address), out retryAfterMs);

    private static System.Net.IPAddress? SourceOf(System.Net.IPAddress? address) => address is null ? null : Weft.Relay.HeldPerAddress.SenderOf(address);

    /// <summary>
    /// Completed handshakes of one machine key, wherever they come from: a device reconnects a few
    /// times a minute at most, so a key that keeps connecting (a copied key, a broken client) is slowed
    /// down. Over TCP the source address is already proven, so WireGuard's cookie exchange would add
    /// nothing to the per-address limit; this is the per-key half.
    /// </summary>
    public bool TryAdmitHandshakeOf(string machineKey, out uint retryAfterMs) => _handshakesPerMachine.TryTake(machineKey, out retryAfterMs);

    /// <summary>Registrations with one auth key (its id), wherever they come from: a leaked key cannot flood the tailnet from many addresses.</summary>
    public bool TryAdmitRegistrationWith(string? authKeyId, out uint retryAfterMs) => _registrationsPerKey.TryTake(authKeyId, out retryAfterMs);

    /// <summary>
    /// A token bucket per source (an address, a key). Buckets that have refilled are forgotten now and
    /// then, so the table stays as small as the set of sources active right now.
    /// </summary>
    private sealed class PerSourceBuckets<TSource>(double perSecond, TimeProvider clock, double? burst = null) where TSource : notnull
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<TSource, TokenBucket> _buckets = new();
        private int _calls;

        public bool TryTake(TSource? source, out uint retryAfterMs)
        {
            retryAfterMs = 0;
            if (perSecond <= 0 || source is null) return true;
            if (Interlocked.Increment(ref _calls) % 1024 == 0)
                foreach (var (key, bucket) in _buckets)
                    if (bucket.IsFull) _buckets.TryRemove(key, out _);
            return _buckets.GetOrAdd(source, _ => new TokenBucket(perSecond, Math.Max(1, burst ?? perSecond * 2), clock)).TryTake(out retryAfterMs);
        }
    }

    /// <summary>
    /// A stream may start its handshake while fewer than the limit are in theirs, in all and from its source
    /// address (a tenth of the limit each): what unauthenticated streams can make this node buffer is bounded
    /// (each first frame by MaxClientMessageSize), and two hosts holding every slot with streams that never
    /// say hello cannot turn the agents of every other tenant away. Dispose the result when the handshake is
    /// over, whatever its outcome. Null: no slot (which limit, in <paramref name="fromAddress"/>).
    /// </summary>
    public IDisposable? TryBeginHandshake(System.Net.IPAddress? address, out bool fromAddress)
    {
        var source = address ?? System.Net.IPAddress.None;
        var refusal = _pendingHandshakes.TryEnter(source);
        fromAddress = refusal == Weft.Relay.HeldPerAddress.Refusal.Address;
        return refusal == Weft.Relay.HeldPerAddress.Refusal.None ? new HandshakeSlot(_pendingHandshakes, source) : null;
    }

    private sealed class HandshakeSlot(Weft.Relay.HeldPerAddress held, System.Net.IPAddress source) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) held.Leave(source);
        }
    }

    /// <summary>True when a new stream may start now; otherwise how long the agent should wait.</summary>
    public bool TryAdmitConnect(out uint retryAfterMs) => _connects.TryTake(out retryAfterMs);

    public bool TryAdmitRegistration(out uint retryAfterMs) => _registrations.TryTake(out retryAfterMs);

    /// <summary>A rate with a burst allowance. Thread-safe: Kestrel calls it from many threads.</summary>
    private sealed class TokenBucket(double perSecond, double capacity, TimeProvider clock)
    {
        private readonly object _gate = new();
        private readonly double _burst = capacity;
        private double _tokens = capacity;
        private long _refilledAt = clock.GetTimestamp();

        /// <summary>Unused long enough to have refilled: forgetting it changes nothing.</summary>
        public bool IsFull
        {
            get
            {
                lock (_gate) return _tokens + clock.GetElapsedTime(_refilledAt).TotalSeconds * perSecond >= _burst;
            }
        }

        public bool TryTake(out uint retryAfterMs)
        {
            if (perSecond <= 0)
            {
                retryAfterMs = 0;
                return true; // unlimited
            }
            lock (_gate)
            {
                var now = clock.GetTimestamp();
                _tokens = Math.Min(_burst, _tokens + clock.GetElapsedTime(_refilledAt, now).TotalSeconds * perSecond);
                _refilledAt = now;
                if (_tokens >= 1)
                {
                    _tokens -= 1;
                    retryAfterMs = 0;
                    return true;
                }
                // Spread the waiting agents over the time the queue in front of them needs, at least a second.
                var deficit = 1 - _tokens;
                retryAfterMs = (uint)Math.Max(1000, Math.Ceiling(deficit / perSecond * 1000));
                return false;
            }
        }
    }
}

/// <summary>What a device asks of the cluster on its stream, each with its own budget (<see cref="ControlSettings"/>).</summary>
public enum DeviceRequest
{
    Endpoints,
    Hostinfo,
    Subscribe,
    NodeKeyRotation,
    /// <summary>A registration on a stream that already has its device (refused beyond the budget, not held).</summary>
    Registration,
}
