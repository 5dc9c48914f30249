using System.Collections.Frozen;
using System.Reflection;
using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;

namespace Weft.Cluster.Messaging;

/// <summary>
/// Serializes <see cref="IClusterMessage"/>s between coordinator nodes as JSON, with the message's
/// <see cref="WireNameAttribute"/> as the manifest. Only messages between live nodes use it; stored
/// events use the protobuf <see cref="Persistence.StoredRecordSerializer"/>.
/// </summary>
public sealed class ClusterMessageSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 7301;

    private readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.General)
    {
        Converters = { new ActorRefConverter(system) },
    };

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => WireCatalog.NameOf(o.GetType());

    public override byte[] ToBinary(object obj)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), _json);
        var type = Telemetry.CoordinatorMetrics.MessageType(WireCatalog.NameOf(obj.GetType()));
        Telemetry.CoordinatorMetrics.ClusterMessagesSent.Add(1, type);
        Telemetry.CoordinatorMetrics.ClusterMessageBytes.Add(bytes.Length, type);
        return bytes;
    }

    /// <summary>
    /// The message, or a <see cref="SerializationException"/> for anything that cannot be read (an unknown
    /// name, a field of another type, a traced message without its parts: a node of another version).
    /// Akka's remoting drops such a message and keeps the link; any other exception would end the
    /// association between the two nodes, and every message and watch over it with it.
    /// </summary>
    public override object FromBinary(byte[] bytes, string manifest)
    {
        var type = WireCatalog.TypeOf(manifest);
        object? message;
        try
        {
            message = JsonSerializer.Deserialize(bytes, type, _json);
        }
        catch (Exception e)
        {
            throw new SerializationException($"cluster message '{manifest}' ({bytes.Length} bytes) cannot be read: {e.Message}", e);
        }
        return message ?? throw new SerializationException($"cluster message '{manifest}' decoded to null");
    }
}

/// <summary>Actor references travel as their full remote path and resolve on the receiving node.</summary>
internal sealed class ActorRefConverter(ExtendedActorSystem system) : JsonConverter<IActorRef>
{
    public override bool CanConvert(Type typeToConvert) => typeof(IActorRef).IsAssignableFrom(typeToConvert);

    public override IActorRef Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var path = reader.GetString();
        return string.IsNullOrEmpty(path) ? ActorRefs.Nobody : system.Provider.ResolveActorRef(path);
    }

    public override void Write(Utf8JsonWriter writer, IActorRef value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.IsNobody() ? "" : Serialization.SerializedActorPath(value));
}

/// <summary>Every cluster message type and its wire name, found once by reflection.</summary>
public static class WireCatalog
{
    private static readonly FrozenDictionary<Type, string> NamesByType;
    private static readonly FrozenDictionary<string, Type> TypesByName;

    static WireCatalog()
    {
        var types = typeof(IClusterMessage).Assembly.GetTypes()
            .Where(t => typeof(IClusterMessage).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
            .ToList();
        var named = new Dictionary<Type, string>();
        foreach (var type in types)
        {
            var name = type.GetCustomAttribute<WireNameAttribute>()?.Name
                ?? throw new InvalidOperationException($"{type.FullName} is a cluster message without a [WireName]");
            named.Add(type, name);
        }
        var duplicate = named.GroupBy(kv => kv.Value).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new InvalidOperationException($"wire name '{duplicate.Key}' is used by {string.Join(", ", duplicate.Select(d => d.Key.Name))}");
        NamesByType = named.ToFrozenDictionary();
        TypesByName = named.ToFrozenDictionary(kv => kv.Value, kv => kv.Key);
    }

    public static IEnumerable<Type> AllTypes => NamesByType.Keys;

    public static string NameOf(Type type) =>
        NamesByType.TryGetValue(type, out var name) ? name
            : throw new SerializationException($"{type.FullName} is not a registered cluster message");

    public static Type TypeOf(string name) =>
        TypesByName.TryGetValue(name, out var type) ? type
            : throw new SerializationException($"unknown cluster message '{name}'");
}
