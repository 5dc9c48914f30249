using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Google.Protobuf;

namespace Weft.Cluster.Persistence;

/// <summary>
/// Writes events and snapshots as protobuf messages under short, stable manifests
/// (for example <c>tn.created</c>). Schemas are only ever added to; old events are read forever.
/// </summary>
public sealed class StoredRecordSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 7201;

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => StoredRecordCatalog.Codecs.ManifestOf(o);

    public override byte[] ToBinary(object obj) => StoredRecordCatalog.Codecs.Encode(obj);

    public override object FromBinary(byte[] bytes, string manifest) => StoredRecordCatalog.Codecs.Decode(bytes, manifest);
}

/// <summary>Maps stored C# records to their protobuf schema and back.</summary>
public sealed class RecordCodecs
{
    private readonly Dictionary<Type, (string Manifest, Func<object, byte[]> Encode)> _byType = new();
    private readonly Dictionary<string, Func<byte[], object>> _byManifest = new();

    public RecordCodecs Add<TRecord, TProto>(string manifest, Func<TRecord, TProto> toProto, Func<TProto, TRecord> fromProto)
        where TRecord : IStoredRecord
        where TProto : IMessage<TProto>, new()
    {
        if (_byManifest.ContainsKey(manifest)) throw new InvalidOperationException($"manifest '{manifest}' registered twice");
        var parser = new MessageParser<TProto>(() => new TProto());
        _byType.Add(typeof(TRecord), (manifest, o => toProto((TRecord)o).ToByteArray()));
        _byManifest.Add(manifest, bytes => fromProto(parser.ParseFrom(bytes))!);
        return this;
    }

    /// <summary>Lets a feature register its schemas with a method of its own.</summary>
    public RecordCodecs Add(Func<RecordCodecs, RecordCodecs> register) => register(this);

    public IEnumerable<Type> RecordTypes => _byType.Keys;

    public IEnumerable<string> Manifests => _byManifest.Keys;

    public string ManifestOf(object record) => Lookup(record).Manifest;

    public byte[] Encode(object record) => Lookup(record).Encode(record);

    public object Decode(byte[] bytes, string manifest)
    {
        if (!_byManifest.TryGetValue(manifest, out var decode))
            throw new SerializationException($"no schema for stored record '{manifest}'");
        try
        {
            return decode(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new SerializationException($"stored record '{manifest}' is corrupt: {e.Message}", e);
        }
    }

    private (string Manifest, Func<object, byte[]> Encode) Lookup(object record) =>
        _byType.TryGetValue(record.GetType(), out var codec) ? codec
            : throw new SerializationException($"{record.GetType().FullName} has no stored-record schema");
}
