using System.Text;
using Microsoft.AspNetCore.DataProtection;
using Weft.Cluster.Hosting;

namespace Weft.Cluster.Identity;

/// <summary>
/// ASP.NET's data protection, with the cluster secret as its key (ChaCha20-Poly1305, bound to the
/// purpose): what one node protects, any node of the cluster opens. A sign-in that starts on one
/// node may come back to another (a load balancer, a node lost meanwhile), and the OpenID Connect
/// state and nonce it carries must open there. Nothing is kept on disk per node.
/// </summary>
public sealed class ClusterSecretProtector(ClusterSecret secret, string purpose = "weft") : IDataProtector
{
    public IDataProtector CreateProtector(string purpose1) => new ClusterSecretProtector(secret, purpose + "/" + purpose1);

    public byte[] Protect(byte[] plaintext) => Encoding.ASCII.GetBytes(secret.Seal(plaintext, purpose));

    /// <summary>Throws <see cref="InvalidOperationException"/> for what this cluster did not protect for this purpose (or what was altered).</summary>
    public byte[] Unprotect(byte[] protectedData) => secret.Unseal(Encoding.ASCII.GetString(protectedData), purpose);
}
