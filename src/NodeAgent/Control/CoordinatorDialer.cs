namespace Weft.NodeAgent.Control;

/// <summary>
/// Which coordinator to dial next, and when: the connector's policy, pure and tested without sockets.
/// <para>
/// Any node of the cluster serves any agent, so a failure moves on to the next URL at once (after a
/// little jitter, so that the agents of a lost node do not all arrive in the same millisecond); only
/// a URL that failed itself waits, with jittered exponential backoff capped at <c>maxBackoff</c>, which
/// is kept below the time the cluster needs to down a dead node, so that no agent waits longer than
/// that to fail over. A coordinator that asks for patience (retry-after) or says it is going away is
/// left alone for as long as it asked. The URLs are the configured ones plus those the latest full
/// netmap lists, so that agents learn of nodes added after they started, and stop dialling nodes the
/// cluster no longer lists (retired), which a failover would otherwise wait on.
/// </para>
/// <para>Every <c>now</c> is a reading of the monotonic clock, never wall time: a stepped wall clock must not delay a redial.</para>
/// </summary>
public sealed class CoordinatorDialer
{
    /// <summary>A node that said it is going away is not dialled again for this long (its restart takes about this).</summary>
    public static readonly TimeSpan GoneAwayFor = TimeSpan.FromSeconds(30);

    private readonly List<Target> _targets = [];
    private readonly TimeSpan _minBackoff;
    private readonly TimeSpan _maxBackoff;
    private readonly Random _random;
    private int _next;

    public CoordinatorDialer(IReadOnlyList<Uri> configured, TimeSpan minBackoff, TimeSpan maxBackoff, Random? random = null)
    {
        if (configured.Count == 0) throw new ArgumentException("at least one coordinator URL is needed", nameof(configured));
        foreach (var url in configured) Add(url, configured: true);
        _minBackoff = minBackoff;
        _maxBackoff = maxBackoff < minBackoff ? minBackoff : maxBackoff;
        _random = random ?? Random.Shared;
    }

    public IReadOnlyList<Uri> Coordinators => _targets.Select(t => t.Url).ToList();

    /// <summary>
    /// Coordinator URLs a netmap lists (the cluster's <c>Weft:Control:PublicUrls</c>): unknown ones are added,
    /// and those learned before that it no longer lists are dropped. The configured ones always stay; a
    /// netmap that lists none (the cluster publishes no URLs) changes nothing.
    /// </summary>
    public void Learn(IEnumerable<string> urls)
    {
        var listed = new List<Uri>();
        foreach (var text in urls)
            if (Uri.TryCreate(text, UriKind.Absolute, out var url) && url.Scheme is "http" or "https") listed.Add(url);
        if (listed.Count == 0) return;
        _targets.RemoveAll(t => !t.Configured && !listed.Contains(t.Url));
        _next %= _targets.Count;
        foreach (var url in listed) Add(url, configured: false);
    }

    /// <summary>The next URL to dial, and how long to wait before dialling it.</summary>
    public (Uri Url, TimeSpan Delay) Next(TimeSpan now)
    {
        // Round-robin from where the last attempt left off, to the first URL that may be dialled soonest.
        Target? best = null;
        var bestIndex = 0;
        for (var i = 0; i < _targets.Count; i++)
        {
            var index = (_next + i) % _targets.Count;
            var target = _targets[index];
            if (best is null || target.NotBefore < best.NotBefore)
            {
                best = target;
                bestIndex = index;
            }
        }
        _next = (bestIndex + 1) % _targets.Count;
        var wait = best!.NotBefore > now ? best.NotBefore - now : TimeSpan.Zero;
        return (best.Url, wait);
    }

    /// <summary>A stream was established: this URL is good again.</summary>
    public void Connected(Uri url)
    {
        if (Find(url) is not { } target) return;
        target.Failures = 0;
        target.NotBefore = TimeSpan.MinValue;
    }

    /// <summary>Dialling <paramref name="url"/> failed, or its stream broke; <paramref name="retryAfter"/> is what the coordinator asked for.</summary>
    public void Failed(Uri url, TimeSpan now, TimeSpan? retryAfter = null)
    {
        if (Find(url) is not { } target) return;
        target.Failures++;
        var wait = Backoff(target.Failures);
        if (retryAfter is { } asked && asked > wait) wait = asked + Jitter(_minBackoff);
        target.NotBefore = now + wait;
    }

    /// <summary>A stream that worked ended (not refused): the others are tried at once, this one after a short jittered pause.</summary>
    public void Lost(Uri url, TimeSpan now)
    {
        if (Find(url) is not { } target) return;
        target.NotBefore = now + Jitter(_minBackoff);
        foreach (var other in _targets.Where(t => t != target && t.NotBefore < now)) other.NotBefore = now + Jitter(_minBackoff) / 2;
    }

    /// <summary>The coordinator said it is going away: dial another after about <paramref name="after"/>, and leave it alone a while.</summary>
    public void GoingAway(Uri url, TimeSpan after, TimeSpan now)
    {
        if (Find(url) is not { } target) return;
        target.NotBefore = now + GoneAwayFor;
        foreach (var other in _targets.Where(t => t != target && t.NotBefore < now + after)) other.NotBefore = now + after + Jitter(after + _minBackoff);
    }

    /// <summary>Equal jitter: half the step fixed, half random, so a fleet that retries together spreads out.</summary>
    private TimeSpan Backoff(int failures)
    {
        var step = Math.Min(_maxBackoff.TotalMilliseconds, _minBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(failures - 1, 16)));
        return TimeSpan.FromMilliseconds(step / 2 + _random.NextDouble() * step / 2);
    }

    private TimeSpan Jitter(TimeSpan upTo) => TimeSpan.FromMilliseconds(_random.NextDouble() * upTo.TotalMilliseconds);

    private void Add(Uri url, bool configured)
    {
        if (_targets.Any(t => t.Url == url)) return;
        _targets.Add(new Target(url, configured));
    }

    /// <summary>The target of <paramref name="url"/>, or null for one dropped since (no longer listed): what its stream reports counts for nothing.</summary>
    private Target? Find(Uri url) => _targets.FirstOrDefault(t => t.Url == url);

    private sealed class Target(Uri url, bool configured)
    {
        public Uri Url { get; } = url;
        public bool Configured { get; } = configured;
        public int Failures { get; set; }
        public TimeSpan NotBefore { get; set; } = TimeSpan.MinValue;
    }
}
