using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NSec.Cryptography;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Hosting;

/// <summary>
/// The secret every node of one cluster shares. From it each node derives the same TLS key and
/// certificate for Akka.Remote, so only nodes holding the secret can join (mutual TLS: each side
/// checks the other's certificate carries the cluster's key, and the handshake proves it holds the
/// private half), and the key that seals what must not rest in clear in the shared store (the
/// coordinator's private key).
/// <para>
/// Where it comes from, first found: <c>Weft:Cluster:Secret</c>, the file <c>Weft:Cluster:SecretFile</c>
/// (mode 0600 or stricter, as ssh insists for its keys), or, with SQLite only, <c>cluster.secret</c>
/// in the data folder, created on first start. A PostgreSQL cluster has several nodes, so the
/// operator must give each the same secret.
/// </para>
/// </summary>
public sealed class ClusterSecret
{
    public const int MinimumBytes = 32;
    public const string GeneratedFileName = "cluster.secret";
    private const string CertificateSubject = "CN=weft-cluster";
    private static readonly AeadAlgorithm Sealing = AeadAlgorithm.ChaCha20Poly1305;

    private readonly byte[] _secret;
    private readonly Lazy<X509Certificate2> _certificate;
    private readonly Lazy<byte[]> _clusterPublicKey;

    private ClusterSecret(byte[] secret, string source)
    {
        _secret = secret;
        Source = source;
        _certificate = new Lazy<X509Certificate2>(CreateCertificate);
        _clusterPublicKey = new Lazy<byte[]>(() => Certificate.GetPublicKey());
    }

    /// <summary>Where the secret came from, for the log (never the secret itself).</summary>
    public string Source { get; }

    /// <summary>This cluster's TLS certificate: self-signed over the key derived from the secret.</summary>
    public X509Certificate2 Certificate => _certificate.Value;

    public override string ToString() => $"cluster secret from {Source}";

    public static ClusterSecret FromText(string text, string source)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(text.Trim());
        }
        catch (FormatException)
        {
            throw new InvalidOperationException($"the cluster secret from {source} is not base64 (create one with: head -c 32 /dev/urandom | base64)");
        }
        if (bytes.Length < MinimumBytes)
            throw new InvalidOperationException($"the cluster secret from {source} has {bytes.Length} bytes; it needs at least {MinimumBytes} (create one with: head -c 32 /dev/urandom | base64)");
        return new ClusterSecret(bytes, source);
    }

    /// <summary>Finds this node's secret (see the class comment), creating the SQLite default on first start.</summary>
    public static ClusterSecret Resolve(ClusterNodeSettings cluster, StorageSettings storage)
    {
        if (!string.IsNullOrWhiteSpace(cluster.Secret)) return FromText(cluster.Secret, "Weft:Cluster:Secret");
        if (!string.IsNullOrWhiteSpace(cluster.SecretFile)) return FromFile(cluster.SecretFile);
        if (storage.Provider != StorageProvider.Sqlite)
            throw new InvalidOperationException(
                "a cluster on PostgreSQL needs the same secret on every node: set Weft:Cluster:SecretFile to a file of mode 0600 holding one " +
                "(create it with: head -c 32 /dev/urandom | base64 > cluster.secret && chmod 600 cluster.secret)");
        // Beside the database: the data folder, or the folder of the database a connection string names.
        var folder = storage.SqliteDatabaseFile() is { } database ? Path.GetDirectoryName(database)! : Path.GetFullPath(storage.DataDirectory);
        var path = Path.Combine(folder, GeneratedFileName);
        if (!File.Exists(path))
        {
            PersistenceSetup.CreateOwnerOnlyFolder(folder);
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            // Written whole under a temporary name, flushed, then linked under its own (which fails if another process
            // created it first: theirs is used), and the folder flushed: the coordinator key is sealed with this secret
            // and stored durably minutes later, so a power cut must not leave the secret empty, missing or half-written.
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            try
            {
                using (var file = new FileStream(temporary, options))
                {
                    file.Write(System.Text.Encoding.ASCII.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(MinimumBytes)) + "\n"));
                    file.Flush(flushToDisk: true);
                }
                try { File.Move(temporary, path, overwrite: false); }
                catch (IOException) when (File.Exists(path)) { } // another process created it first: use theirs
                if (OperatingSystem.IsLinux()) NodeAgent.Control.PrivateFile.SyncFolderOf(path);
            }
            finally
            {
                File.Delete(temporary);
            }
        }
        return FromFile(path);
    }

    private static ClusterSecret FromFile(string path)
    {
        if (!File.Exists(path)) throw new InvalidOperationException($"the cluster secret file {path} does not exist");
        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            const UnixFileMode othersMayRead = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
            if ((mode & othersMayRead) != 0)
                throw new InvalidOperationException($"the cluster secret file {path} may be read by others (mode {Convert.ToString((int)mode, 8)}); chmod 600 it");
        }
        return FromText(File.ReadAllText(path), path);
    }

    /// <summary>
    /// 32 bytes derived from the secret for one <paramref name="purpose"/>: the same on every node of
    /// the cluster (the relay-ticket signing key, so that relays trust tickets from any node).
    /// </summary>
    public byte[] Derive(string purpose) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, _secret, 32, info: System.Text.Encoding.UTF8.GetBytes("weft derive v1: " + purpose));

    /// <summary>Encrypts <paramref name="plaintext"/> for the store; <paramref name="purpose"/> binds it to one use.</summary>
    public string Seal(ReadOnlySpan<byte> plaintext, string purpose)
    {
        using var key = SealingKey(purpose);
        var nonce = RandomNumberGenerator.GetBytes(Sealing.NonceSize);
        var sealedBytes = Sealing.Encrypt(key, nonce, System.Text.Encoding.UTF8.GetBytes(purpose), plaintext);
        return Convert.ToBase64String([.. nonce, .. sealedBytes]);
    }

    /// <summary>Opens what <see cref="Seal"/> made, or fails clearly when another secret sealed it or it was altered.</summary>
    public byte[] Unseal(string sealedText, string purpose)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(sealedText);
        }
        catch (FormatException)
        {
            throw new InvalidOperationException($"the stored {purpose} is not sealed data");
        }
        using var key = SealingKey(purpose);
        var plaintext = new byte[Math.Max(0, bytes.Length - Sealing.NonceSize - Sealing.TagSize)];
        if (bytes.Length < Sealing.NonceSize + Sealing.TagSize
            || !Sealing.Decrypt(key, bytes.AsSpan(0, Sealing.NonceSize), System.Text.Encoding.UTF8.GetBytes(purpose), bytes.AsSpan(Sealing.NonceSize), plaintext))
            throw new InvalidOperationException($"the stored {purpose} cannot be opened with this node's cluster secret ({Source}): every node of a cluster needs the same secret");
        return plaintext;
    }

    private Key SealingKey(string purpose) =>
        Key.Import(Sealing, HKDF.DeriveKey(HashAlgorithmName.SHA256, _secret, Sealing.KeySize, info: System.Text.Encoding.UTF8.GetBytes("weft seal v1: " + purpose)),
            KeyBlobFormat.RawSymmetricKey);

    /// <summary>
    /// Whether a peer's certificate carries this cluster's public key. The chain is not consulted (the
    /// certificate is self-signed by design); TLS has already proved the peer holds the private key.
    /// </summary>
    public bool IsClusterPeer(X509Certificate? certificate) =>
        certificate is not null && CryptographicOperations.FixedTimeEquals(certificate.GetPublicKey(), _clusterPublicKey.Value);

    private X509Certificate2 CreateCertificate()
    {
        using var key = DeriveTlsKey();
        var request = new CertificateRequest(CertificateSubject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false)); // server and client authentication
        using var selfSigned = request.CreateSelfSigned(DateTimeOffset.UnixEpoch, new DateTimeOffset(9999, 12, 31, 0, 0, 0, TimeSpan.Zero));
        // Through PKCS#12 so that SslStream can use the private key on every platform.
        return X509CertificateLoader.LoadPkcs12(selfSigned.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A P-256 key every node derives alike from the secret.</summary>
    private ECDsa DeriveTlsKey()
    {
        for (var attempt = 0; ; attempt++)
        {
            var scalar = HKDF.DeriveKey(HashAlgorithmName.SHA256, _secret, 32, info: System.Text.Encoding.UTF8.GetBytes($"weft cluster tls p-256 v1 #{attempt}"));
            try
            {
                return ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = scalar });
            }
            catch (CryptographicException) when (attempt < 8)
            {
                // Zero or not below the group order (about 2^-32 likely): derive again.
            }
        }
    }
}
