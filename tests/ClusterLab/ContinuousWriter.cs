using System.Diagnostics;
using System.Text.Json;
using Weft.Cluster.Cli;

namespace Weft.ClusterLab;

/// <summary>
/// An admin client that creates users in one tailnet, one after another, through whichever nodes
/// answer — as a careful client does: each creation carries an Idempotency-Key and is retried
/// (across nodes) until it is acknowledged or its client gives up. It records what was acknowledged
/// and when, so a test can find the longest stretch with no acknowledged write, and check that every
/// acknowledged write is still there afterwards.
/// </summary>
public sealed class ContinuousWriter : IAsyncDisposable
{
    private readonly AdminApiClient _admin;
    private readonly string _tailnet;
    private readonly TimeSpan _interval;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(DateTime At, string UserId)> _acked = [];
    private readonly List<(DateTime At, string Error)> _failed = [];
    private readonly Task _loop;
    private int _sequence;

    private ContinuousWriter(AdminApiClient admin, string tailnet, TimeSpan interval)
    {
        _admin = admin;
        _tailnet = tailnet;
        _interval = interval;
        _loop = Task.Run(Loop);
    }

    public static ContinuousWriter Start(AdminApiClient admin, string tailnet, TimeSpan interval) => new(admin, tailnet, interval);

    public IReadOnlyList<(DateTime At, string UserId)> Acked { get { lock (_acked) return _acked.ToList(); } }

    /// <summary>Writes refused for good (after the client's retries): each one a failed operation.</summary>
    public IReadOnlyList<(DateTime At, string Error)> Failed { get { lock (_failed) return _failed.ToList(); } }

    /// <summary>The longest time between two acknowledgements (or a boundary and one) within [from, to].</summary>
    public TimeSpan LongestGap(DateTime from, DateTime to)
    {
        var times = Acked.Select(a => a.At).Where(t => t >= from && t <= to).Prepend(from).Append(to).Order().ToList();
        return times.Zip(times.Skip(1), (a, b) => b - a).DefaultIfEmpty(TimeSpan.Zero).Max();
    }

    /// <summary>Acknowledged writes that the cluster does not list now (must be none).</summary>
    public async Task<IReadOnlyList<string>> Lost(AdminApiClient admin)
    {
        var listed = (await admin.GetAsync($"/api/v1/tailnets/{_tailnet}/users")).GetProperty("users").EnumerateArray()
            .Select(u => u.GetProperty("id").GetString()!).ToHashSet();
        return Acked.Where(a => !listed.Contains(a.UserId)).Select(a => a.UserId).ToList();
    }

    private async Task Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            var started = Stopwatch.GetTimestamp();
            var name = $"writer-{Interlocked.Increment(ref _sequence)}@example.com";
            try
            {
                var user = await _admin.PostAsync($"/api/v1/tailnets/{_tailnet}/users", new { name });
                lock (_acked) _acked.Add((DateTime.UtcNow, user.GetProperty("id").GetString()!));
            }
            catch (Exception e) when (e is AdminApiError or HttpRequestException or TaskCanceledException or JsonException)
            {
                if (_stop.IsCancellationRequested) break;
                lock (_failed) _failed.Add((DateTime.UtcNow, $"{name}: {e.Message}"));
            }
            var rest = _interval - Stopwatch.GetElapsedTime(started);
            if (rest > TimeSpan.Zero)
            {
                try { await Task.Delay(rest, _stop.Token); } catch (OperationCanceledException) { break; }
            }
        }
    }

    /// <summary>Stops writing (the write in progress completes).</summary>
    public async Task Stop()
    {
        await _stop.CancelAsync();
        await _loop;
    }

    public async ValueTask DisposeAsync()
    {
        await Stop();
        _admin.Dispose();
    }
}
