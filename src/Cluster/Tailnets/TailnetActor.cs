using Akka.Actor;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

/// <summary>
/// The sharded, event-sourced entity of one tailnet: the single writer of its settings (and, as
/// Weft grows, of its users, keys, policy and device index).
/// </summary>
public sealed class TailnetActor : EventSourcedEntity<TailnetState, ITailnetEvent>
{
    public TailnetActor(string tailnetId, PersistenceSettings settings)
        : base(settings, TailnetState.Unborn(tailnetId))
    {
        PersistenceId = PersistenceIdOf(tailnetId);
    }

    public override string PersistenceId { get; }

    public static string PersistenceIdOf(string tailnetId) => "tailnet-" + tailnetId;

    public static Props PropsFor(string tailnetId, PersistenceSettings settings) =>
        Props.Create(() => new TailnetActor(tailnetId, settings));

    protected override TailnetState Apply(TailnetState state, ITailnetEvent @event) => state.Apply(@event);

    protected override bool IsCommand(object message) => message is ITailnetCommand;

    protected override Decision<ITailnetEvent> Decide(TailnetState state, object command) => state.Process((ITailnetCommand)command);

    protected override bool TryAnswer(TailnetState state, object message, out object reply)
    {
        if (message is GetTailnet)
        {
            reply = state.IsActive ? state.ToInfo() : state.NotFound();
            return true;
        }
        reply = null!;
        return false;
    }

    protected override object Acknowledge(object command, TailnetState stateAfter) => command switch
    {
        DeleteTailnet => new TailnetDeletedAck(stateAfter.TailnetId),
        _ => stateAfter.ToInfo(),
    };
}
