using Weft.Cluster.ApiKeys;

namespace Weft.ClusterLab;

public static class LabKeys
{
    /// <summary>Installed as the first operator key of every lab and test cluster.</summary>
    public static readonly string OperatorKey = ApiKeyToken.Generate().ToString();

    /// <summary>The cluster secret every lab and test node on PostgreSQL shares (a SQLite node makes its own).</summary>
    public static readonly string ClusterSecret = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
}
