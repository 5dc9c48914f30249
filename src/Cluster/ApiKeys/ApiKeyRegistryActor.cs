using Akka.Actor;
using Weft.Cluster.Persistence;
using Weft.Cluster.Replication;

namespace Weft.Cluster.ApiKeys;

/// <summary>
/// The one entity that issues and revokes admin API keys for the whole cluster. It is the single
/// writer, not the reader: its state is replicated to every node (<see cref="ReplicatedState{T}"/>),
/// where requests are authenticated locally, so losing the node that hosts it stops no admin call.
/// A command is answered once its change reached every reachable node.
/// </summary>
public sealed class ApiKeyRegistryActor(PersistenceSettings settings)
    : EventSourcedEntity<ApiKeyRegistryState, IApiKeyEvent>(settings, ApiKeyRegistryState.Empty)
{
    public const string EntityId = "registry";
    /// <summary>The distributed-data key every node reads the keys from.</summary>
    public const string ReplicaKey = "weft-api-keys";

    private ReplicatedState<ApiKeyRegistryState> _replicated = null!;

    protected override void PreStart()
    {
        _replicated = new ReplicatedState<ApiKeyRegistryState>(Context.System, ReplicaKey);
        base.PreStart();
    }

    protected override void OnRecovered() => _replicated.Publish(State, LastSequenceNr, Self);

    protected override void PostStop()
    {
        _replicated?.ReleaseHeld();
        base.PostStop();
    }

    protected override void OnEventsPersisted(IReadOnlyList<IApiKeyEvent> events, ApiKeyRegistryState before, ApiKeyRegistryState after) =>
        _replicated.Publish(after, LastSequenceNr, Self);

    protected override void OnCommandPersisted(object command, IActorRef sender, ApiKeyRegistryState stateAfter) =>
        _replicated.ReplyWhenReplicated(LastSequenceNr, sender, Acknowledge(command, stateAfter));

    protected override bool HandleOther(object message) => _replicated.TryHandle(message);

    public override string PersistenceId => "api-keys";

    public static Props PropsFor(PersistenceSettings settings) => Props.Create(() => new ApiKeyRegistryActor(settings));

    protected override ApiKeyRegistryState Apply(ApiKeyRegistryState state, IApiKeyEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is BootstrapOperatorKey or IssueApiKey or RevokeApiKey or RevokeTailnetApiKeys;

    protected override Decision<IApiKeyEvent> Decide(ApiKeyRegistryState state, object command) => state.Process(command);

    protected override bool TryAnswer(ApiKeyRegistryState state, object message, out object reply)
    {
        reply = message switch
        {
            VerifyApiKey verify => state.Verify(verify),
            ListApiKeys list => state.List(list),
            _ => null!,
        };
        return reply is not null;
    }

    protected override object Acknowledge(object command, ApiKeyRegistryState stateAfter) => command switch
    {
        BootstrapOperatorKey bootstrap => new OperatorKeyBootstrap(
            stateAfter.Keys.TryGetValue(bootstrap.KeyId, out var key) && key.SecretHash == bootstrap.SecretHash),
        IssueApiKey issue => stateAfter.Keys[issue.KeyId].ToSummary(),
        RevokeApiKey or RevokeTailnetApiKeys => new ApiKeyListing([]),
        _ => throw new InvalidOperationException(command.GetType().Name),
    };
}
