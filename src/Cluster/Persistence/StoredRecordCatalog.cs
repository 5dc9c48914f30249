using Weft.Cluster.ApiKeys;
using Weft.Cluster.Audit;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Persistence;

/// <summary>Every stored record of every entity. A new entity adds its line here.</summary>
public static class StoredRecordCatalog
{
    public static readonly RecordCodecs Codecs = new RecordCodecs()
        .AddTailnetRecords()
        .AddTailnetDirectoryRecords()
        .AddApiKeyRecords()
        .AddDeviceRecords()
        .AddMachineRecords()
        .AddAuditRecords()
        .Add(Control.ClusterKeyActor.Records);
}
