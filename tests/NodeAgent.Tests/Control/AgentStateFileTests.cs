using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Tests.Control;

public sealed class AgentStateFileTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "weft-agent-state-" + Guid.NewGuid().ToString("N"));

    private string StatePath => Path.Combine(_directory, AgentStateFile.FileName);

    [Fact]
    public void A_new_identity_is_written_readable_by_the_owner_only_and_read_back_the_same()
    {
        var created = AgentStateFile.LoadOrCreate(_directory);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(StatePath));
        Assert.Equal(created, AgentStateFile.LoadOrCreate(_directory));
        Assert.NotEqual(created.MachinePrivateKey, created.NodePrivateKey);
    }

    [Fact]
    public void Saving_replaces_the_file_and_keeps_its_mode()
    {
        var state = AgentStateFile.LoadOrCreate(_directory);
        var next = state with { DeviceId = "dev_x", TailnetId = "tn_y", NextNodePrivateKey = AgentState.Fresh().NodePrivateKey };

        AgentStateFile.Save(_directory, next);

        Assert.Equal(next, AgentStateFile.Load(StatePath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(StatePath));
        Assert.False(File.Exists(StatePath + ".tmp"));
    }

    [Fact]
    public void The_folder_of_a_replaced_file_is_flushed_too_and_one_that_cannot_be_is_a_clear_error()
    {
        // A rename lives in its folder: flushing the file alone let a power cut bring back the state from before it (the
        // node key the coordinator had replaced), and the agent had to log in again.
        Directory.CreateDirectory(_directory);
        PrivateFile.SyncFolderOf(StatePath); // a folder that exists: flushed
        var missing = Path.Combine(_directory, "gone", "file.json");
        var refused = Assert.Throws<IOException>(() => PrivateFile.SyncFolderOf(missing));
        Assert.Contains("cannot open", refused.Message);
        Assert.Contains(Path.GetDirectoryName(missing)!, refused.Message);
    }

    [Fact]
    public void Printing_the_state_or_a_key_change_shows_no_private_key()
    {
        var state = AgentState.Fresh() with { NextNodePrivateKey = AgentState.Fresh().NodePrivateKey, DeviceId = "dev_x" };
        var printed = state.ToString();
        Assert.Contains("dev_x", printed);
        foreach (var secret in new[] { state.MachinePrivateKey, state.NodePrivateKey, state.NextNodePrivateKey! })
            Assert.DoesNotContain(secret, printed, StringComparison.OrdinalIgnoreCase);

        var changed = new NodeKeyChanged(state.NodePrivateKey, Rotated: true);
        Assert.DoesNotContain(state.NodePrivateKey, changed.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Rotated = True", changed.ToString());
    }

    [Theory]
    [InlineData("not json", "not a valid agent state file")]
    [InlineData("{}", "not a valid agent state file")]
    [InlineData("""{"machinePrivateKey":"zz","nodePrivateKey":"zz"}""", "machinePrivateKey is not 64 hex characters")]
    public void A_damaged_state_file_is_a_clear_error_not_a_new_identity(string content, string expected)
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(StatePath, content);

        var error = Assert.Throws<AgentStateException>(() => AgentStateFile.LoadOrCreate(_directory));

        Assert.Contains(expected, error.Message);
        Assert.Equal(content, File.ReadAllText(StatePath)); // left alone for the operator to inspect
    }

    [Fact]
    public void A_state_file_a_later_version_wrote_still_starts_this_one_which_writes_back_what_it_does_not_know()
    {
        // An agent downgraded (or its package rolled back) finds members it does not know: refusing the file
        // would keep the daemon down, and with it the tunnel an operator may reach the machine through.
        var state = AgentState.Fresh();
        Directory.CreateDirectory(_directory);
        File.WriteAllText(StatePath, $$$"""{"machinePrivateKey":"{{{state.MachinePrivateKey}}}","nodePrivateKey":"{{{state.NodePrivateKey}}}","deviceId":"dev_x","discoPrivateKey":"abc","later":{"n":[1,2]}}""");

        var loaded = AgentStateFile.LoadOrCreate(_directory);
        Assert.Equal((state.MachinePrivateKey, state.NodePrivateKey, "dev_x"), (loaded.MachinePrivateKey, loaded.NodePrivateKey, loaded.DeviceId));

        AgentStateFile.Save(_directory, loaded with { TailnetId = "tn_y" });
        var written = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(StatePath))!;
        Assert.Equal("abc", (string?)written["discoPrivateKey"]);
        Assert.Equal("[1,2]", written["later"]!["n"]!.ToJsonString());
        Assert.Equal("tn_y", (string?)written["tailnetId"]);
    }

    [Fact]
    public void Prefs_a_later_version_wrote_are_read_and_what_this_one_does_not_know_is_written_back()
    {
        var prefs = new Weft.NodeAgent.Agent.AgentPrefsFile(_directory);
        Directory.CreateDirectory(_directory);
        File.WriteAllText(prefs.Path, """{"loginServers":["https://weft.example.com"],"hostname":"box","wantRunning":true,"shieldsUp":true}""");

        var loaded = prefs.Load();
        Assert.Equal("https://weft.example.com", Assert.Single(loaded.LoginServers));
        Assert.Equal(("box", true), (loaded.Hostname, loaded.WantRunning));

        prefs.Save(loaded with { WantRunning = false });
        var written = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(prefs.Path))!;
        Assert.True((bool)written["shieldsUp"]!);
        Assert.False((bool)written["wantRunning"]!);
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }
}
