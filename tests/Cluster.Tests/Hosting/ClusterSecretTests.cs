using System.Security.Cryptography;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tests.Hosting;

public sealed class ClusterSecretTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("weft-secret-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static string NewSecretText() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    [Fact]
    public void A_secret_that_is_not_base64_or_too_short_is_refused_with_how_to_make_one()
    {
        var notBase64 = Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText("not base64 at all!", "the test"));
        Assert.Contains("not base64", notBase64.Message);
        var tooShort = Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText(Convert.ToBase64String(new byte[16]), "the test"));
        Assert.Contains("has 16 bytes; it needs at least 32", tooShort.Message);
        Assert.Contains("head -c 32 /dev/urandom | base64", tooShort.Message);
    }

    [Fact]
    public void On_sqlite_a_node_without_a_secret_creates_one_only_its_owner_may_read_and_keeps_it()
    {
        var storage = new StorageSettings { DataDirectory = _folder };
        var first = ClusterSecret.Resolve(new ClusterNodeSettings(), storage);
        var path = Path.Combine(_folder, ClusterSecret.GeneratedFileName);

        Assert.Equal(path, first.Source);
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var again = ClusterSecret.Resolve(new ClusterNodeSettings(), storage);
        Assert.Equal(first.Certificate.GetPublicKey(), again.Certificate.GetPublicKey());
        Assert.Equal([path], Directory.GetFiles(_folder)); // written under a temporary name, which is gone
    }

    [Fact]
    public void Nodes_starting_at_once_on_one_folder_all_take_the_secret_the_first_one_wrote_whole()
    {
        // The secret is written whole under a temporary name and linked under its own only then: one that starts at
        // the same moment never reads a half-written file, and takes the first one's.
        var storage = new StorageSettings { DataDirectory = _folder };
        var secrets = new System.Collections.Concurrent.ConcurrentBag<byte[]>();
        Parallel.For(0, 8, _ => secrets.Add(ClusterSecret.Resolve(new ClusterNodeSettings(), storage).Certificate.GetPublicKey()));
        Assert.Single(secrets.Select(Convert.ToHexString).Distinct());
        Assert.Single(Directory.GetFiles(_folder));
    }

    [Fact]
    public void On_postgresql_a_node_must_be_given_the_secret()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            ClusterSecret.Resolve(new ClusterNodeSettings(), new StorageSettings { Provider = StorageProvider.Postgres, ConnectionString = "Host=x" }));
        Assert.Contains("Weft:Cluster:SecretFile", error.Message);
    }

    [SkippableFact]
    public void A_secret_file_others_may_read_is_refused()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix file modes");
        var path = Path.Combine(_folder, "shared.secret");
        File.WriteAllText(path, NewSecretText());
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var error = Assert.Throws<InvalidOperationException>(() =>
            ClusterSecret.Resolve(new ClusterNodeSettings { SecretFile = path }, new StorageSettings { DataDirectory = _folder }));
        Assert.Contains("may be read by others (mode 644); chmod 600 it", error.Message);

        File.SetUnixFileMode(path, UnixFileMode.UserRead);
        Assert.Equal(path, ClusterSecret.Resolve(new ClusterNodeSettings { SecretFile = path }, new StorageSettings()).Source);
    }

    [Fact]
    public void Nodes_with_the_same_secret_derive_the_same_certificate_and_accept_each_other_and_no_one_else()
    {
        var text = NewSecretText();
        var node1 = ClusterSecret.FromText(text, "node1");
        var node2 = ClusterSecret.FromText(text, "node2");
        var stranger = ClusterSecret.FromText(NewSecretText(), "stranger");

        Assert.Equal(node1.Certificate.GetPublicKey(), node2.Certificate.GetPublicKey());
        Assert.True(node1.Certificate.HasPrivateKey);
        Assert.True(node1.IsClusterPeer(node2.Certificate));
        Assert.False(node1.IsClusterPeer(stranger.Certificate));
        Assert.False(node1.IsClusterPeer(null));
    }

    [Fact]
    public void What_one_node_seals_another_with_the_secret_opens_and_a_stranger_or_a_changed_byte_cannot()
    {
        var text = NewSecretText();
        var sealedKey = ClusterSecret.FromText(text, "node1").Seal("the coordinator key"u8, "coordinator private key");

        Assert.DoesNotContain("the coordinator key", sealedKey);
        Assert.Equal("the coordinator key"u8.ToArray(), ClusterSecret.FromText(text, "node2").Unseal(sealedKey, "coordinator private key"));
        var stranger = Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText(NewSecretText(), "stranger").Unseal(sealedKey, "coordinator private key"));
        Assert.Contains("every node of a cluster needs the same secret", stranger.Message);
        Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText(text, "node2").Unseal(sealedKey, "something else"));
        var bytes = Convert.FromBase64String(sealedKey);
        bytes[^1] ^= 1;
        Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText(text, "node2").Unseal(Convert.ToBase64String(bytes), "coordinator private key"));
        Assert.Throws<InvalidOperationException>(() => ClusterSecret.FromText(text, "node2").Unseal("@@not base64", "coordinator private key"));
    }
}
