using Weft.Contracts.Relay;

namespace Weft.Relay;

/// <summary>
/// Gathers the access checks of logins that arrive close together into one ask of the issuer: the
/// first login opens a batch, which goes after <c>window</c>, or at once when it holds
/// <c>maxTickets</c>. A relay restart (or the loss of a neighbour) brings thousands of clients back
/// within seconds; one request per login would meet the coordinator's per-address rate limit, and
/// every login it refused would get in on its ticket's signature alone, revoked or not.
/// </summary>
internal sealed class LoginAccessBatches(
    Func<IReadOnlyList<RelayTicket>, Task<(IReadOnlyList<bool?> Allowed, string? Problem)>> ask, TimeSpan window, int maxTickets)
{
    private readonly Lock _gate = new();
    private List<(RelayTicket Ticket, TaskCompletionSource<(bool? Allowed, string? Problem)> Answer)>? _open;

    /// <summary>Batches the issuer were asked (tests, and the log's figures).</summary>
    public long BatchesSent => Interlocked.Read(ref _batchesSent);

    private long _batchesSent;

    /// <summary>The issuer's answer about <paramref name="ticket"/> (null: it could not tell), with why not when it failed.</summary>
    public Task<(bool? Allowed, string? Problem)> AskAsync(RelayTicket ticket)
    {
        var answer = new TaskCompletionSource<(bool?, string?)>(TaskCreationOptions.RunContinuationsAsynchronously);
        List<(RelayTicket, TaskCompletionSource<(bool?, string?)>)>? full = null;
        lock (_gate)
        {
            if (_open is null)
            {
                _open = [];
                _ = SendWhenDueAsync(_open);
            }
            _open.Add((ticket, answer));
            if (_open.Count >= maxTickets) (full, _open) = (_open, null);
        }
        if (full is not null) _ = SendAsync(full);
        return answer.Task;
    }

    private async Task SendWhenDueAsync(List<(RelayTicket, TaskCompletionSource<(bool?, string?)>)> batch)
    {
        await Task.Delay(window);
        lock (_gate)
        {
            if (!ReferenceEquals(_open, batch)) return; // it filled up and went already
            _open = null;
        }
        await SendAsync(batch);
    }

    private async Task SendAsync(List<(RelayTicket Ticket, TaskCompletionSource<(bool?, string?)> Answer)> batch)
    {
        Interlocked.Increment(ref _batchesSent);
        (IReadOnlyList<bool?> Allowed, string? Problem) answers;
        try
        {
            answers = await ask([.. batch.Select(b => b.Ticket)]);
        }
        catch (Exception e)
        {
            answers = ([.. batch.Select(_ => (bool?)null)], e.Message);
        }
        for (var i = 0; i < batch.Count; i++) batch[i].Answer.TrySetResult((answers.Allowed[i], answers.Problem));
    }
}
