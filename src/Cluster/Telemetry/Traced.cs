using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Weft.Cluster.Messaging;

namespace Weft.Cluster.Telemetry;

/// <summary>
/// A command with the trace context of the request that sent it (W3C <c>traceparent</c>), so that
/// the entity's span continues the admin API call's trace on whichever node the entity lives.
/// Shard regions route it by the command inside (<see cref="Unwrap"/>); between nodes it travels as
/// the command's own wire name and JSON beside the trace parent.
/// </summary>
[WireName("traced")]
[JsonConverter(typeof(TracedConverter))]
public sealed record Traced(object Message, string TraceParent) : IClusterMessage
{
    /// <summary>A tailnet command, traced with the current activity when there is one; anything else as it is.</summary>
    public static object Wrap(object message) =>
        Activity.Current is { } current && message is Tailnets.ITailnetCommand ? new Traced(message, current.Id!) : message;

    public static object Unwrap(object message) => message is Traced traced ? traced.Message : message;

    /// <summary>
    /// Starts the entity's span for this command, a child of the sender's (null when nothing listens).
    /// The span outlives the message (it ends when the command's write is stored), so it is not left
    /// as the actor thread's current activity.
    /// </summary>
    public Activity? StartSpan(string entityType, string entityId)
    {
        if (!ActivityContext.TryParse(TraceParent, null, out var parent)) return null;
        var previous = Activity.Current;
        var command = WireCatalog.NameOf(Message.GetType());
        var span = CoordinatorTracing.Source.StartActivity($"{entityType} {command}", ActivityKind.Internal, parent)?
            .SetTag("weft.entity.type", entityType)
            .SetTag("weft.entity.id", entityId)
            .SetTag("weft.command", command);
        Activity.Current = previous;
        return span;
    }
}

internal sealed class TracedConverter : JsonConverter<Traced>
{
    public override Traced Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        var root = document.RootElement;
        var type = WireCatalog.TypeOf(root.GetProperty("type").GetString()!);
        var message = root.GetProperty("message").Deserialize(type, options)
            ?? throw new JsonException("a traced message without its message");
        return new Traced(message, root.GetProperty("traceparent").GetString()!);
    }

    public override void Write(Utf8JsonWriter writer, Traced value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("traceparent", value.TraceParent);
        writer.WriteString("type", WireCatalog.NameOf(value.Message.GetType()));
        writer.WritePropertyName("message");
        JsonSerializer.Serialize(writer, value.Message, value.Message.GetType(), options);
        writer.WriteEndObject();
    }
}
