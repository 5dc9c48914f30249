using System.Collections.Concurrent;
using System.Collections.Immutable;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Persistence.Journal;

namespace Weft.Cluster.Tests.Support;

/// <summary>
/// The in-memory journal, except that it rejects every write of the persistence ids a test names (as a
/// journal rejects an event it cannot serialize): nothing is stored and the entity hears it was rejected.
/// </summary>
public sealed class RejectingJournal : MemoryJournal
{
    private static readonly ConcurrentDictionary<string, byte> Refused = new();

    /// <summary>Configuration that makes this the default journal.</summary>
    public static readonly Config Configuration = ConfigurationFactory.ParseString($$"""
        akka.persistence.journal.plugin = "weft-test-rejecting-journal"
        weft-test-rejecting-journal {
            class = "{{typeof(RejectingJournal).AssemblyQualifiedName}}"
            plugin-dispatcher = "akka.actor.default-dispatcher"
        }
        """);

    public static void Reject(string persistenceId) => Refused[persistenceId] = 0;

    public static void Accept(string persistenceId) => Refused.TryRemove(persistenceId, out _);

    protected override async Task<IImmutableList<Exception>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken)
    {
        var writes = messages.ToList();
        var accepted = writes.Where(w => !Refused.ContainsKey(w.PersistenceId)).ToList();
        var acceptedResults = accepted.Count > 0 ? await base.WriteMessagesAsync(accepted, cancellationToken) : null;
        var results = ImmutableList.CreateBuilder<Exception>();
        var next = 0;
        foreach (var write in writes)
        {
            if (Refused.ContainsKey(write.PersistenceId)) results.Add(new NotSupportedException($"the test's journal rejects writes of {write.PersistenceId}"));
            else results.Add(acceptedResults?[next++]!);
        }
        return results.ToImmutable();
    }
}
