using System.Net;
using Weft.Cluster.Hosting;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>Every operator key lost: root resets one on the coordinator's machine, and the next start installs it.</summary>
public class OperatorKeyResetTests
{
    [Fact]
    public async Task A_reset_key_left_in_the_data_directory_is_installed_at_the_next_start_and_the_request_removed()
    {
        await using var storage = TestStorage.NewSqlite();
        await (await TestCoordinator.StartAsync(storage)).DisposeAsync();
        var folder = storage.DataDirectory;

        Assert.Throws<UnauthorizedAccessException>(() => OperatorKeyReset.Request(folder, isRoot: false));
        var token = OperatorKeyReset.Request(folder, isRoot: true);
        var request = OperatorKeyReset.PathIn(folder);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(request));
        Assert.DoesNotContain(token.Secret, File.ReadAllText(request)); // only the hash rests on disk

        await using var node = await TestCoordinator.StartAsync(storage);
        using var recovered = TestCoordinator.NewClient(node.Api, token.ToString());
        await (await recovered.GetAsync("/api/v1/tailnets")).ReadAs<TailnetListResource>(HttpStatusCode.OK);
        var keys = await (await recovered.GetAsync("/api/v1/api-keys")).ReadAs<ApiKeyListResource>(HttpStatusCode.OK);
        Assert.Contains(keys.ApiKeys, k => k.Id == token.KeyId && k.Scope == "operator" && k.Description == "operator-key reset");
        Assert.False(File.Exists(request));
    }

    [Fact]
    public void A_request_others_could_have_written_is_refused()
    {
        var folder = Directory.CreateTempSubdirectory("weft-reset-").FullName;
        try
        {
            OperatorKeyReset.Request(folder, isRoot: true);
            File.SetUnixFileMode(OperatorKeyReset.PathIn(folder), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherWrite);
            Assert.Contains("read or written by others", Assert.Throws<InvalidOperationException>(() => OperatorKeyReset.Pending(folder)).Message);
            File.WriteAllText(OperatorKeyReset.PathIn(folder), "not a request");
            File.SetUnixFileMode(OperatorKeyReset.PathIn(folder), UnixFileMode.UserRead | UnixFileMode.UserWrite);
            Assert.Contains("is not an operator-key reset request", Assert.Throws<InvalidOperationException>(() => OperatorKeyReset.Pending(folder)).Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
