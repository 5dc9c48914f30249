using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Weft.Cluster.Persistence;

/// <summary>
/// The thin persistent shell around an entity's pure logic (<c>Decide</c> and <c>Apply</c>).
/// <para>
/// Commands that arrive while a write is in flight wait in a buffer; when the write completes,
/// the whole buffer is decided against the current state and written with one
/// <c>PersistAllAsync</c> (group commit). Replies go out only after the events are stored, so an
/// acknowledged command is durable. Queries are answered at once from the committed state.
/// </para>
/// </summary>
public abstract class EventSourcedEntity<TState, TEvent> : UntypedPersistentActor
    where TState : class
    where TEvent : class
{
    private readonly PersistenceSettings _settings;
    private readonly List<PendingCommand> _pending = new();
    private InFlightWrite? _inFlight;
    private bool _stopping;
    private long _eventsSinceSnapshot;

    // Journal retention (see ForgetWhatSnapshotsCover): the newest snapshot this entity knows of.
    private long _newestSnapshotSequenceNr;

    // ForgetHistory: the sequence number whose snapshot becomes the whole history (0: none asked).
    private long _forgetHistoryAt;

    // What this entity deletes from the store goes one deletion at a time: two at once for one entity can
    // deadlock each other in PostgreSQL (each holds rows the other wants), and the loser's rows would stay.
    private abstract record StoreDeletion;
    private sealed record EventsUpTo(long SequenceNr, bool Forgetting) : StoreDeletion;
    private sealed record SnapshotsUpTo(long SequenceNr, bool Forgetting = false) : StoreDeletion;
    private sealed record OneSnapshot(long SequenceNr) : StoreDeletion;
    private readonly Queue<StoreDeletion> _deletions = new();
    private StoreDeletion? _deleting;

    protected EventSourcedEntity(PersistenceSettings settings, TState initial)
    {
        _settings = settings;
        State = initial;
        _entityTypeName = EntityTypeName(GetType());
        _entityType = Telemetry.CoordinatorMetrics.EntityType(_entityTypeName);
        Telemetry.CoordinatorMetrics.EntitiesStarted.Add(1, _entityType);
    }

    private readonly string _entityTypeName;
    private readonly KeyValuePair<string, object?> _entityType;

    /// <summary>The entity type as metrics name it: TailnetActor is "tailnet", TailnetDirectoryActor "tailnet-directory".</summary>
    private static string EntityTypeName(Type type)
    {
        var name = type.Name.EndsWith("Actor", StringComparison.Ordinal) ? type.Name[..^"Actor".Length] : type.Name;
        return string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
    }

    protected override void PostStop()
    {
        Telemetry.CoordinatorMetrics.EntitiesStopped.Add(1, _entityType);
        base.PostStop();
    }

    /// <summary>
    /// Whether this entity keeps snapshots. One whose journal stays a few events long for good recovers
    /// faster without: its recovery skips the snapshot store's query (a database round trip) and replays
    /// every event, which are never deleted.
    /// </summary>
    protected virtual bool KeepsSnapshots => true;

    /// <summary>
    /// Whether this entity keeps the events its snapshots cover even without <see cref="PersistenceSettings.KeepAllEvents"/>:
    /// for one whose journal is a record that must stay whole (the audit logs).
    /// </summary>
    protected virtual bool KeepsEventsCoveredBySnapshots => false;

    public override Recovery Recovery => KeepsSnapshots ? base.Recovery : new Recovery(SnapshotSelectionCriteria.None);

    /// <summary>The state as of the last event that was persisted.</summary>
    protected TState State { get; private set; }

    protected abstract TState Apply(TState state, TEvent @event);

    /// <summary>True for the messages that go through <see cref="Decide"/> and the journal.</summary>
    protected abstract bool IsCommand(object message);

    /// <summary>The entity's pure logic for one command (see <see cref="IsCommand"/>).</summary>
    protected abstract Decision<TEvent> Decide(TState state, object command);

    /// <summary>Answers read-only queries from the committed state; returns false for anything else.</summary>
    protected virtual bool TryAnswer(TState state, object message, out object reply)
    {
        reply = null!;
        return false;
    }

    /// <summary>The reply to an accepted command, given the state right after its own events.</summary>
    protected abstract object Acknowledge(object command, TState stateAfter);

    /// <summary>Called once the events of an accepted command are stored. By default it replies to the sender.</summary>
    protected virtual void OnCommandPersisted(object command, IActorRef sender, TState stateAfter) =>
        sender.Tell(Acknowledge(command, stateAfter));

    /// <summary>
    /// Called once per stored write, before any reply: the events in order, and the state before
    /// and after them. Entities that tell others about their changes do it here.
    /// </summary>
    protected virtual void OnEventsPersisted(IReadOnlyList<TEvent> events, TState before, TState after) { }

    /// <summary>Messages that are neither commands nor queries (timers, pipes, lifecycle).</summary>
    protected virtual bool HandleOther(object message) => false;

    protected virtual void OnRecovered() { }

    protected sealed override void OnRecover(object message)
    {
        switch (message)
        {
            case SnapshotOffer { Snapshot: TState snapshot } offer:
                State = snapshot;
                _newestSnapshotSequenceNr = offer.Metadata.SequenceNr;
                break;
            case TEvent @event:
                State = Apply(State, @event);
                _eventsSinceSnapshot++;
                break;
            case RecoveryCompleted:
                OnRecovered();
                break;
        }
    }

    protected sealed override void OnCommand(object received)
    {
        // A traced command (Telemetry/Traced) gets a span of its own, which ends when its write is stored.
        var message = Telemetry.Traced.Unwrap(received);
        var span = (received as Telemetry.Traced)?.StartSpan(_entityTypeName, PersistenceId);
        if (TryAnswerSafely(message, out var reply))
        {
            Sender.Tell(reply);
            Telemetry.CoordinatorTracing.End(span);
            return;
        }

        switch (message)
        {
            case StopEntity:
                // Sharding stops the entity (a hand-off in a rebalance, idle passivation): not with a write
                // in the air, which a copy started on the shard's new node could race.
                _stopping = true;
                StopIfIdle();
                return;
            case SaveSnapshotSuccess saved:
                ForgetWhatSnapshotsCover(saved.Metadata.SequenceNr);
                StopIfIdle();
                return;
            case SaveSnapshotFailure failed when _forgetHistoryAt > 0 && failed.Metadata.SequenceNr >= _forgetHistoryAt:
                _forgetHistoryAt = 0;
                ForgettingFailed = true;
                Log.Error(failed.Cause, "Snapshot of {0} failed, so its stored events were not deleted; it is tried again", PersistenceId);
                StopIfIdle();
                return;
            case SaveSnapshotFailure failed:
                Log.Warning(failed.Cause, "Snapshot of {0} failed; recovery will replay more events", PersistenceId);
                return;
            case DeleteMessagesSuccess deleted when _deleting is EventsUpTo:
                if (_deleting is EventsUpTo { Forgetting: true })
                    Log.Debug("{0}: every stored event up to {1} is deleted; its snapshot is all that is left of them", PersistenceId, deleted.ToSequenceNr);
                DeleteNext();
                return;
            case DeleteMessagesFailure failed when _deleting is EventsUpTo { Forgetting: true }:
                ForgettingFailed = true;
                Log.Error(failed.Cause, "Could not delete the stored events of {0} up to {1}; it is tried again", PersistenceId, failed.ToSequenceNr);
                DeleteNext();
                return;
            case DeleteMessagesFailure failed when _deleting is EventsUpTo:
                // Nothing is lost: the events stay, and the next snapshot's deletion covers them too.
                Log.Warning(failed.Cause, "Deleting the events of {0} up to {1} failed; the next snapshot deletes them", PersistenceId, failed.ToSequenceNr);
                DeleteNext();
                return;
            case DeleteSnapshotsSuccess or DeleteSnapshotSuccess when _deleting is SnapshotsUpTo or OneSnapshot:
                DeleteNext();
                return;
            case DeleteSnapshotsFailure when _deleting is SnapshotsUpTo { Forgetting: true }:
                // The older snapshots hold what was to be forgotten: not a thing to leave for a next snapshot that may never come.
                ForgettingFailed = true;
                Log.Error("Could not delete the older snapshots of {0}; it is tried again", PersistenceId);
                DeleteNext();
                return;
            case DeleteSnapshotsFailure or DeleteSnapshotFailure when _deleting is SnapshotsUpTo or OneSnapshot:
                Log.Warning("Deleting older snapshots of {0} failed; the next snapshot's deletions cover them", PersistenceId);
                DeleteNext();
                return;
        }

        if (HandleOther(message))
        {
            Telemetry.CoordinatorTracing.End(span);
            return;
        }

        if (IsCommand(message))
        {
            _pending.Add(new PendingCommand(message, Sender, span));
            if (_inFlight is null) WriteNextBatch();
            return;
        }

        Telemetry.CoordinatorTracing.End(span, "unhandled");
        Unhandled(message);
    }

    /// <summary>Queues a command as if <paramref name="replyTo"/> had sent it.</summary>
    protected void Submit(object command, IActorRef replyTo)
    {
        _pending.Add(new PendingCommand(command, replyTo, null));
        if (_inFlight is null) WriteNextBatch();
    }

    /// <summary>
    /// Changes soft state: what the entity keeps and shows but does not journal, because its source
    /// re-sends it after a restart (endpoints, for the tailnet). The change applies to the committed
    /// state and, if a write is in flight, on top of that write's outcome (and its replies) too, so
    /// the write's completion does not undo it. It survives in snapshots; after a recovery it is as old as the
    /// last snapshot or stored event until its source reports again.
    /// </summary>
    protected void ChangeSoftState(Func<TState, TState> change)
    {
        State = change(State);
        if (_inFlight is null) return;
        _inFlight.StateBefore = change(_inFlight.StateBefore);
        _inFlight.FinalState = change(_inFlight.FinalState);
        var commands = _inFlight.Commands;
        for (var i = 0; i < commands.Count; i++) commands[i] = commands[i] with { StateAfter = change(commands[i].StateAfter) };
    }

    /// <summary>
    /// A question that throws (a defect: answering reads the state and changes nothing) gets an internal
    /// error and is logged, instead of restarting the entity, which would lose what it holds in memory only.
    /// </summary>
    private bool TryAnswerSafely(object message, out object reply)
    {
        try
        {
            return TryAnswer(State, message, out reply);
        }
        catch (Exception e)
        {
            Log.Error(e, "{0} {1} failed to answer {2}", _entityTypeName, PersistenceId, message.GetType().Name);
            reply = InternalError(message, e);
            return true;
        }
    }

    /// <summary>A command whose decision throws (a defect: deciding changes nothing) is refused alone; the batch around it goes on.</summary>
    private Decision<TEvent> DecideSafely(TState state, object command)
    {
        try
        {
            return Decide(state, command);
        }
        catch (Exception e)
        {
            Log.Error(e, "{0} {1} failed to decide {2}", _entityTypeName, PersistenceId, command.GetType().Name);
            return Decision<TEvent>.Reject(InternalError(command, e));
        }
    }

    /// <summary>
    /// Internal: asking again would run the same defect against the same state, so nothing in the cluster
    /// repeats it (the API answers 500; an agent's registration is told to come back later, see DeviceRegistrar).
    /// </summary>
    private static Rejection InternalError(object message, Exception e) =>
        new(Weft.Contracts.Admin.ApiErrorCodes.Internal, $"internal error handling {message.GetType().Name} ({e.GetType().Name}); nothing was written");

    /// <summary>Decides every buffered command (up to the batch limit) and writes all their events at once.</summary>
    private void WriteNextBatch()
    {
        while (_pending.Count > 0 && _inFlight is null)
        {
            var take = Math.Min(_pending.Count, Math.Max(1, _settings.MaxCommandsPerWrite));
            var batch = _pending.GetRange(0, take);
            _pending.RemoveRange(0, take);

            var state = State;
            var events = new List<TEvent>();
            var decided = new List<DecidedCommand>(batch.Count);
            foreach (var (command, sender, span) in batch)
            {
                var decision = DecideSafely(state, command);
                if (!decision.IsRejected)
                {
                    foreach (var @event in decision.Events)
                    {
                        state = Apply(state, @event);
                        events.Add(@event);
                    }
                }
                decided.Add(new DecidedCommand(command, sender, decision.Rejection, state, span));
            }

            if (events.Count == 0)
            {
                Complete(decided, state);
                continue;
            }

            _inFlight = new InFlightWrite(decided, State, state, events);
            PersistAllAsync(events, _ => OnEventStoredOrRejected(rejection: null));
        }
    }

    /// <summary>
    /// Counts down the events of the write in flight. A batch is one atomic write, so it is stored
    /// or rejected as a whole; the batch completes when its last event is accounted for.
    /// </summary>
    private void OnEventStoredOrRejected(string? rejection)
    {
        var write = _inFlight!;
        write.EventsLeft--;
        write.Rejection ??= rejection;
        if (write.EventsLeft > 0) return;

        _inFlight = null;
        Telemetry.CoordinatorMetrics.JournalWriteDuration.Record(Telemetry.CoordinatorMetrics.SecondsSince(write.Started), _entityType);
        if (write.Rejection is null)
        {
            _eventsSinceSnapshot += write.Events.Count;
            // What the write causes (the tailnet's netmap fan-out) is traced under the first traced command of the batch.
            Telemetry.CoordinatorTracing.Within(write.Commands.FirstOrDefault(c => c.Span is not null)?.Span,
                () => OnEventsPersisted(write.Events, write.StateBefore, write.FinalState));
            Complete(write.Commands, write.FinalState);
            MaybeSnapshot();
        }
        else
        {
            foreach (var command in write.Commands)
            {
                command.Sender.Tell(Rejection.Unavailable(write.Rejection));
                Telemetry.CoordinatorTracing.End(command.Span, write.Rejection);
            }
        }
        WriteNextBatch();
        StopIfIdle();
    }

    /// <summary>A write is in flight or a command waits for one.</summary>
    protected bool IsWriting => _inFlight is not null || _pending.Count > 0;

    /// <summary>A <see cref="ForgetHistory"/> (its snapshot, or the deletions after it) is under way.</summary>
    protected bool IsForgetting => _forgetHistoryAt > 0 || _deleting is not null || _deletions.Count > 0;

    /// <summary>The last <see cref="ForgetHistory"/>'s snapshot, or a deletion after it (of events or older snapshots), failed: what it meant to erase may be stored still, for the caller to forget again.</summary>
    protected bool ForgettingFailed { get; private set; }

    /// <summary>Once asked to stop (<see cref="StopEntity"/>): stops when no write is in flight, no command waits and no <see cref="ForgetHistory"/> waits for its snapshot.</summary>
    private void StopIfIdle()
    {
        // A ForgetHistory waits for its snapshot too (its deletions go out only once it is stored), and deletions for
        // their answers, which start the next.
        if (_stopping && _inFlight is null && _pending.Count == 0 && _forgetHistoryAt == 0 && _deleting is null) Context.Stop(Self);
    }

    private void Complete(List<DecidedCommand> decided, TState finalState)
    {
        State = finalState;
        foreach (var command in decided)
        {
            if (command.Rejection is not null) command.Sender.Tell(command.Rejection);
            else OnCommandPersisted(command.Command, command.Sender, command.StateAfter);
            Telemetry.CoordinatorTracing.End(command.Span, command.Rejection?.Message);
        }
    }

    /// <summary>
    /// Once a snapshot at <paramref name="newest"/> is stored, keeps it and the one before it (an operator can
    /// delete a newest snapshot that cannot be read, and the entity recovers from the older one and the events
    /// after it), and deletes what is older: snapshots, and unless <see cref="PersistenceSettings.KeepAllEvents"/>
    /// or <see cref="KeepsEventsCoveredBySnapshots"/>, the events up to the older snapshot. So a busy entity's
    /// journal stays about two snapshot intervals long instead of growing with every change it ever made (a
    /// tailnet journals a last-seen time per disconnect).
    /// </summary>
    private void ForgetWhatSnapshotsCover(long newest)
    {
        var older = _newestSnapshotSequenceNr;
        _newestSnapshotSequenceNr = Math.Max(older, newest);
        if (_forgetHistoryAt > 0 && newest >= _forgetHistoryAt)
        {
            _forgetHistoryAt = 0;
            Delete(new SnapshotsUpTo(newest - 1, Forgetting: true));
            Delete(new EventsUpTo(newest, Forgetting: true));
            return;
        }
        // A late answer for a snapshot older than one already stored (two were in flight): it is not needed, and after
        // a ForgetHistory it must not stay.
        if (newest < older) Delete(new OneSnapshot(newest));
        if (newest <= older) return;
        if (older <= 0)
        {
            Delete(new SnapshotsUpTo(newest - 1));
            return;
        }
        Delete(new SnapshotsUpTo(older - 1));
        if (_settings.KeepAllEvents || KeepsEventsCoveredBySnapshots) return;
        Delete(new EventsUpTo(older, Forgetting: false));
    }

    /// <summary>
    /// Makes <paramref name="current"/> the entity's state and all that is stored of it: a snapshot of it, then no
    /// event and no older snapshot (the journal keeps its last row, marked deleted, for the sequence numbers).
    /// <paramref name="current"/> is the state as of the last stored event (in <see cref="OnEventsPersisted"/>, its
    /// <c>after</c>), or what is left of it once erased. For what must not outlive a deletion or a change of form.
    /// Repeating it is harmless, and one cut off by a stop is the caller's to repeat at its next recovery.
    /// </summary>
    protected void ForgetHistory(TState current)
    {
        ForgettingFailed = false;
        if (Equals(current, State) && _eventsSinceSnapshot == 0 && LastSequenceNr > 0 && _newestSnapshotSequenceNr == LastSequenceNr)
        {
            // The newest snapshot already holds this state (a recovery that replayed nothing after it): only what is
            // older can be left, from a forgetting cut off before its deletions, and deleting nothing costs little.
            Delete(new SnapshotsUpTo(LastSequenceNr - 1, Forgetting: true));
            Delete(new EventsUpTo(LastSequenceNr, Forgetting: true));
            return;
        }
        State = current;
        _eventsSinceSnapshot = 0;
        _forgetHistoryAt = LastSequenceNr;
        SaveSnapshot(current);
    }

    /// <summary>
    /// Deletes every stored event (the journal keeps its last row, marked deleted, for the sequence numbers),
    /// unless <see cref="PersistenceSettings.KeepAllEvents"/>: for an entity without snapshots whose state after
    /// its last event is its empty one (a machine key no device holds any more). Nothing to retry: what stays
    /// is only rows, which the next such deletion takes.
    /// </summary>
    protected void ForgetAllEvents()
    {
        if (!_settings.KeepAllEvents && LastSequenceNr > 0) Delete(new EventsUpTo(LastSequenceNr, Forgetting: false));
    }

    private void Delete(StoreDeletion deletion)
    {
        _deletions.Enqueue(deletion);
        if (_deleting is null) DeleteNext();
    }

    /// <summary>Sends the next queued deletion to the store, or with none left, stops the entity if it was waiting for them.</summary>
    private void DeleteNext()
    {
        _deleting = _deletions.Count > 0 ? _deletions.Dequeue() : null;
        switch (_deleting)
        {
            case EventsUpTo events:
                DeleteMessages(events.SequenceNr);
                break;
            case SnapshotsUpTo snapshots:
                DeleteSnapshots(new SnapshotSelectionCriteria(snapshots.SequenceNr));
                break;
            case OneSnapshot snapshot:
                DeleteSnapshot(snapshot.SequenceNr);
                break;
            case null:
                StopIfIdle();
                break;
        }
    }

    /// <summary>Whether <see cref="PersistenceSettings.KeepAllEvents"/> asks for every entity's full history.</summary>
    protected bool KeepsAllEvents => _settings.KeepAllEvents;

    private void MaybeSnapshot()
    {
        if (!KeepsSnapshots || _settings.SnapshotEveryEvents <= 0 || _eventsSinceSnapshot < _settings.SnapshotEveryEvents) return;
        _eventsSinceSnapshot = 0;
        SaveSnapshot(State);
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        // The journal refused the batch (for example a serializer failure). Nothing was stored, the
        // state is unchanged, and every waiting sender learns so.
        Log.Error(cause, "Journal rejected an event of {0}: {1}", PersistenceId, @event.GetType().Name);
        OnEventStoredOrRejected("the write was rejected by the journal: " + cause.Message);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        // The store is unreachable. Akka stops this entity; it recovers from the journal on the next message.
        Log.Error(cause, "Journal write of {0} failed; the entity stops and will recover", PersistenceId);
        var waiting = (_inFlight?.Commands.Select(c => (c.Sender, c.Span)) ?? []).Concat(_pending.Select(p => (p.Sender, p.Span)));
        foreach (var (sender, span) in waiting)
        {
            sender.Tell(Rejection.Unavailable("storage is unavailable: " + cause.Message));
            Telemetry.CoordinatorTracing.End(span, "storage is unavailable");
        }
        _inFlight = null;
        _pending.Clear();
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    private readonly record struct PendingCommand(object Command, IActorRef Sender, System.Diagnostics.Activity? Span);

    private sealed record DecidedCommand(object Command, IActorRef Sender, Rejection? Rejection, TState StateAfter, System.Diagnostics.Activity? Span);

    private sealed class InFlightWrite(List<DecidedCommand> commands, TState stateBefore, TState finalState, List<TEvent> events)
    {
        public List<DecidedCommand> Commands { get; } = commands;
        public TState StateBefore { get; set; } = stateBefore;
        public TState FinalState { get; set; } = finalState;
        public List<TEvent> Events { get; } = events;
        public int EventsLeft { get; set; } = events.Count;
        public string? Rejection { get; set; }
        public long Started { get; } = System.Diagnostics.Stopwatch.GetTimestamp();
    }
}

/// <summary>
/// How sharding stops a persistent entity (its hand-off stop message, for rebalances and idle
/// passivation). Akka's default, PoisonPill, stops an entity at once, even with a journal write in
/// flight: that write still lands, and can race the first write of the copy the shard starts on its
/// new node. An <see cref="EventSourcedEntity{TState,TEvent}"/> stops only once its writes are stored and
/// answered. Sent only within a node.
/// </summary>
public sealed class StopEntity
{
    public static readonly StopEntity Instance = new();

    private StopEntity() { }
}
