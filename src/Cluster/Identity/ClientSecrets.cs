using System.Text;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Identity;

/// <summary>
/// A tailnet's OIDC client secret rests sealed with the cluster secret (ChaCha20-Poly1305, bound to
/// the tailnet): the journal and snapshots hold only <c>sealed:v1:…</c>, which opens on the
/// cluster's nodes only, and only for that tailnet. A secret stored before sealing existed is used as
/// it is (and sealed at its next set).
/// </summary>
public static class ClientSecrets
{
    public const string SealedPrefix = "sealed:v1:";

    public static string Seal(ClusterSecret secret, string tailnetId, string clientSecret) =>
        SealedPrefix + secret.Seal(Encoding.UTF8.GetBytes(clientSecret), Purpose(tailnetId));

    public static string Open(ClusterSecret secret, string tailnetId, string stored) =>
        stored.StartsWith(SealedPrefix, StringComparison.Ordinal)
            ? Encoding.UTF8.GetString(secret.Unseal(stored[SealedPrefix.Length..], Purpose(tailnetId)))
            : stored;

    private static string Purpose(string tailnetId) => "oidc client secret of " + tailnetId;
}
