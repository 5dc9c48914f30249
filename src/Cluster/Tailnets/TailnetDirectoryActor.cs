using Akka.Actor;
using Akka.Event;
using Weft.Contracts.Admin;
using Weft.Cluster.Persistence;
using Weft.Cluster.Replication;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// The one directory entity. It is the single writer of tailnet names (every node reads them from a
/// replica of its state, <see cref="Replication.ReplicatedState{T}"/>), and it carries each creation
/// and removal through to the tailnet entity: the intent is stored first, then the entity is told,
/// then the outcome is stored. An intent interrupted by a crash is retried after recovery, so a
/// tailnet is never half created or half removed for long.
/// </summary>
public sealed class TailnetDirectoryActor : EventSourcedEntity<TailnetDirectoryState, ITailnetDirectoryEvent>, IWithTimers
{
    public const string EntityId = "directory";
    /// <summary>The distributed-data key every node reads tailnet names from.</summary>
    public const string ReplicaKey = "weft-tailnet-directory";

    private static readonly TimeSpan EntityAnswerTimeout = TimeSpan.FromSeconds(8);
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(5);

    private readonly IActorRef _tailnets;
    private IActorRef? _apiKeys;
    private readonly HashSet<string> _awaitingEntity = new();
    private ReplicatedState<TailnetDirectoryState> _replicated = null!;

    public TailnetDirectoryActor(IActorRef tailnets, PersistenceSettings settings) : base(settings, TailnetDirectoryState.Empty)
    {
        _tailnets = tailnets;
    }

    public override string PersistenceId => "tailnet-directory";

    /// <summary>
    /// The API-key registry, looked up when a removal first needs it, not at start: this remembered
    /// entity can start (its shard placed on a node that is starting) before the registry's region is
    /// registered, and a reference taken then would leave every removal waiting for an answer from
    /// nobody until the directory restarted.
    /// </summary>
    private IActorRef ApiKeyRegistry =>
        (_apiKeys ??= Akka.Hosting.ActorRegistry.For(Context.System).TryGet<ApiKeys.ApiKeyRegistryActor>(out var registry) ? registry : null)
        ?? ActorRefs.Nobody;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(IActorRef tailnets, PersistenceSettings settings) =>
        Props.Create(() => new TailnetDirectoryActor(tailnets, settings));

    protected override void PreStart()
    {
        _replicated = new ReplicatedState<TailnetDirectoryState>(Context.System, ReplicaKey);
        base.PreStart();
        Timers.StartPeriodicTimer("retry-pending", RetryPending.Instance, RetryInterval);
    }

    protected override void PostStop()
    {
        _replicated?.ReleaseHeld();
        base.PostStop();
    }

    protected override void OnEventsPersisted(IReadOnlyList<ITailnetDirectoryEvent> events, TailnetDirectoryState before, TailnetDirectoryState after) =>
        _replicated.Publish(after, LastSequenceNr, Self);

    protected override TailnetDirectoryState Apply(TailnetDirectoryState state, ITailnetDirectoryEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) =>
        message is RegisterTailnet or RenameTailnet or RemoveTailnet or FinishRegistration or FinishRemoval or AbandonRegistration;

    protected override Decision<ITailnetDirectoryEvent> Decide(TailnetDirectoryState state, object command) => state.Process(command);

    protected override bool TryAnswer(TailnetDirectoryState state, object message, out object reply)
    {
        switch (message)
        {
            case ListTailnets:
                reply = state.List();
                return true;
            case FindTailnet find:
                reply = state.FindActive(find.IdOrName)?.ToEntry() ?? (object)TailnetDirectoryState.NotFound(find.IdOrName);
                return true;
            default:
                reply = null!;
                return false;
        }
    }

    protected override object Acknowledge(object command, TailnetDirectoryState stateAfter) => command switch
    {
        FinishRegistration finish => new TailnetRegistered(stateAfter.Entries[finish.TailnetId].ToEntry(), finish.Info),
        RenameTailnet rename => stateAfter.Entries[rename.TailnetId].ToEntry(),
        FinishRemoval finish => new TailnetRemoved(finish.TailnetId),
        AbandonRegistration abandon => abandon.Reason,
        _ => throw new InvalidOperationException($"{command.GetType().Name} is acknowledged by its follow-up"),
    };

    protected override void OnCommandPersisted(object command, IActorRef sender, TailnetDirectoryState stateAfter)
    {
        switch (command)
        {
            case RegisterTailnet register:
                TellEntity(new CreateTailnet(register.TailnetId, register.Settings, register.At), sender);
                break;
            case RemoveTailnet remove:
                TellEntity(new DeleteTailnet(remove.TailnetId, remove.At), sender);
                break;
            default:
                // Answered once every reachable node can resolve the name.
                _replicated.ReplyWhenReplicated(LastSequenceNr, sender, Acknowledge(command, stateAfter));
                break;
        }
    }

    protected override bool HandleOther(object message)
    {
        switch (message)
        {
            case TailnetEntityAnswered answered:
                OnEntityAnswered(answered);
                return true;
            case TailnetKeysRevoked revoked:
                _awaitingEntity.Remove(revoked.Removal.TailnetId);
                if (revoked.Answer is ApiKeys.ApiKeyListing) Submit(new FinishRemoval(revoked.Removal.TailnetId), revoked.ReplyTo);
                else NotConfirmed(revoked.Removal, revoked.Answer, revoked.ReplyTo);
                return true;
            case RetryPending:
                foreach (var entry in State.Pending) Resume(entry);
                return true;
            default:
                return _replicated.TryHandle(message);
        }
    }

    protected override void OnRecovered()
    {
        _replicated.Publish(State, LastSequenceNr, Self);
        foreach (var entry in State.Pending) Resume(entry);
    }

    private void Resume(DirectoryEntry entry)
    {
        if (_awaitingEntity.Contains(entry.TailnetId)) return;
        ITailnetCommand command = entry.Phase == DirectoryPhase.Creating
            ? new CreateTailnet(entry.TailnetId, entry.InitialSettings, entry.CreatedAt)
            : new DeleteTailnet(entry.TailnetId, entry.RemovalRequestedAt ?? entry.CreatedAt);
        Log.Info("Resuming interrupted {0} of tailnet {1}", entry.Phase, entry.TailnetId);
        TellEntity(command, ActorRefs.Nobody);
    }

    private void TellEntity(ITailnetCommand command, IActorRef replyTo)
    {
        _awaitingEntity.Add(command.TailnetId);
        _tailnets.Ask<object>(command, EntityAnswerTimeout).PipeTo(Self,
            success: answer => new TailnetEntityAnswered(command, answer, replyTo),
            failure: error => new TailnetEntityAnswered(command, Rejection.Unavailable(error.Message), replyTo));
    }

    private void OnEntityAnswered(TailnetEntityAnswered answered)
    {
        _awaitingEntity.Remove(answered.Command.TailnetId);
        switch (answered.Command, answered.Answer)
        {
            case (CreateTailnet create, TailnetInfo info):
                Submit(new FinishRegistration(create.TailnetId, info), answered.ReplyTo);
                break;
            case (CreateTailnet create, Rejection { Code: not ApiErrorCodes.Unavailable } refused):
                // Not a busy or unreachable entity but a refusal that no retry changes.
                Log.Warning("Tailnet {0} refused its creation ({1}); its registration is abandoned and its name freed", create.TailnetId, refused.Message);
                Submit(new AbandonRegistration(create.TailnetId, refused), answered.ReplyTo);
                break;
            case (DeleteTailnet delete, TailnetDeletedAck):
                // Its tenant API keys go with it, before the removal is final (a retried removal revokes again).
                _awaitingEntity.Add(delete.TailnetId);
                ApiKeyRegistry.Ask<object>(new ApiKeys.RevokeTailnetApiKeys(delete.TailnetId), EntityAnswerTimeout).PipeTo(Self,
                    success: answer => new TailnetKeysRevoked(delete, answer, answered.ReplyTo),
                    failure: error => new TailnetKeysRevoked(delete, Rejection.Unavailable(error.Message), answered.ReplyTo));
                break;
            default:
                NotConfirmed(answered.Command, answered.Answer, answered.ReplyTo);
                break;
        }
    }

    private void NotConfirmed(ITailnetCommand command, object answer, IActorRef replyTo)
    {
        var reason = answer is Rejection r ? r.Message : answer.GetType().Name;
        Log.Warning("Tailnet {0} did not confirm {1} ({2}); retrying every {3}", command.TailnetId, command.GetType().Name, reason, RetryInterval);
        replyTo.Tell(Rejection.Unavailable(
            $"tailnet {command.TailnetId} is accepted but not yet confirmed ({reason}); it completes in the background"));
    }

    private sealed class RetryPending
    {
        public static readonly RetryPending Instance = new();
    }
}
