using Akka.Actor;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.ApiKeys;

/// <summary>The one entity that issues and verifies admin API keys for the whole cluster.</summary>
public sealed class ApiKeyRegistryActor(PersistenceSettings settings)
    : EventSourcedEntity<ApiKeyRegistryState, IApiKeyEvent>(settings, ApiKeyRegistryState.Empty)
{
    public const string EntityId = "registry";

    public override string PersistenceId => "api-keys";

    public static Props PropsFor(PersistenceSettings settings) => Props.Create(() => new ApiKeyRegistryActor(settings));

    protected override ApiKeyRegistryState Apply(ApiKeyRegistryState state, IApiKeyEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is BootstrapOperatorKey or IssueApiKey or RevokeApiKey;

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
        RevokeApiKey revoke => new ApiKeyListing([]),
        _ => throw new InvalidOperationException(command.GetType().Name),
    };
}
