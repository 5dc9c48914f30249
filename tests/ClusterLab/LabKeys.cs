using Weft.Cluster.ApiKeys;

namespace Weft.ClusterLab;

public static class LabKeys
{
    /// <summary>Installed as the first operator key of every lab and test cluster.</summary>
    public static readonly string OperatorKey = ApiKeyToken.Generate().ToString();
}
