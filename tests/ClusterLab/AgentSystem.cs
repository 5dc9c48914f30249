using Akka.Actor;

namespace Weft.ClusterLab;

/// <summary>An actor system for a test's agents, terminated (with every agent in it) at the end of the test.</summary>
public sealed class AgentSystem : IAsyncDisposable
{
    public ActorSystem System { get; } = TestAgent.NewSystem();

    public async ValueTask DisposeAsync() => await System.Terminate();

    public static implicit operator ActorSystem(AgentSystem agents) => agents.System;
}
