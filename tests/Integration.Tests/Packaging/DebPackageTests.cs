using System.Text.Json;
using System.Text.RegularExpressions;
using Weft.Lab;

namespace Weft.Integration.Tests.Packaging;

/// <summary>
/// The .deb as an operator installs it: built by <c>deploy/deb/build</c>, installed with <c>dpkg -i</c>
/// on this machine, its daemon started, joined with the installed CLI, and a ping over the tunnel to a
/// peer in the lab; then <c>dpkg --purge</c>, after which nothing of it is left. systemd does not run
/// in CI's container, so the test starts the installed unit's own command line (its ExecStart and
/// Environment lines, with the state directory systemd would give) in a lab machine instead.
/// </summary>
public class DebPackageTests
{
    private const string Hub = "198.18.0.254";
    private const string Unit = "/lib/systemd/system/weft-agent.service";
    private const string Binary = "/usr/bin/weft-agent";
    private const string StateDirectory = "/var/lib/weft-agent";

    /// <summary>
    /// There while this test's own package is on the machine. A run killed between <c>dpkg -i</c> and
    /// the purge (a cancelled job, a machine restarted) leaves both behind; the next run finds the
    /// marker and purges that leftover instead of refusing to run. An install without the marker is
    /// an operator's, and the test does not touch it.
    /// </summary>
    private const string OwnInstallMarker = "/var/tmp/weft-deb-test.installed";

    [SkippableFact]
    public async Task The_deb_installs_a_daemon_that_joins_and_pings_and_purge_leaves_nothing_behind()
    {
        await using var lab = LabTest.Open("ping", "dpkg", "dpkg-deb", "git");
        if (File.Exists(OwnInstallMarker)) PurgeOwn();
        Assert.False(Known(), "weft-agent is installed on this machine already; the test installs and purges its own, so it will not touch that one");
        var deb = BuildPackage("amd64", Path.Combine(lab.Directory, "deb"));
        Assert.Matches(@"weft-agent_0\.1\.0\+git[0-9a-f]+_amd64\.deb$", deb);
        Assert.Equal(["debian-binary", "control.tar.gz", "data.tar.gz"], ArchiveMembers(deb));
        // What extracts at run time goes where the unit's PrivateTmp would be: the lab's folder.
        var extract = Path.Combine(lab.Directory, "unit-tmp");
        Directory.CreateDirectory(extract);
        try
        {
            File.WriteAllText(OwnInstallMarker, $"{deb} installed by {nameof(DebPackageTests)} at {DateTimeOffset.UtcNow:O}\n");
            Lab.Lab.Run("dpkg", "-i", deb);
            Assert.True(Installed());
            Assert.True(File.Exists(Binary));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(StateDirectory));
            var unit = File.ReadAllText(Unit);
            var command = UnitCommandLine(unit, extract);
            Assert.Equal([Binary, "daemon"], command.Skip(command.IndexOf(Binary)).Take(2));

            var segment = Segment.Create(lab);
            segment.AttachHost(Hub + "/24");
            var coordinator = WeftCoordinator.Start(lab, Hub);
            var tailnet = await coordinator.CreateTailnet("package");
            var installed = lab.AddNamespace("pkg");
            segment.Attach(installed, "198.18.0.1/24");
            var peerMachine = lab.AddNamespace("peer");
            segment.Attach(peerMachine, "198.18.0.2/24");

            await LabTest.WithLogsOnFailure(lab, "deb", async () =>
            {
                var daemon = installed.Start("installed weft-agent daemon", [.. command]);
                daemon.WaitForOutput("local API on " + StateDirectory, TimeSpan.FromSeconds(60));
                // The installed CLI, as root, finds the daemon's socket in /var/lib/weft-agent by itself.
                var up = installed.Run("env", "DOTNET_BUNDLE_EXTRACT_BASE_DIR=" + extract, Binary, "up", "--login-server", coordinator.Control.ToString(),
                    "--auth-key", await coordinator.CreateAuthKey(tailnet), "--hostname", "pkg");
                Assert.Contains("running", up);
                var peer = WeftAgent.Start(peerMachine, "peer", coordinator.Control, await coordinator.CreateAuthKey(tailnet));
                var peerAddress = peer.Addresses().V4;
                Assert.True(Traffic.PingUntilAnswered(installed, peerAddress, TimeSpan.FromSeconds(30)) is not null, "the installed agent reaches its peer");
                using (var status = JsonDocument.Parse(installed.Run("env", "DOTNET_BUNDLE_EXTRACT_BASE_DIR=" + extract, Binary, "status", "--json")))
                    Assert.Equal("peer", status.RootElement.GetProperty("peers")[0].GetProperty("name").GetString());
                daemon.Stop(TimeSpan.FromSeconds(15));
            });
        }
        finally
        {
            PurgeOwn();
        }

        Assert.False(Known());
        Assert.False(File.Exists(OwnInstallMarker));
        Assert.False(File.Exists(Binary), Binary);
        Assert.False(File.Exists(Unit), Unit);
        Assert.False(Directory.Exists(StateDirectory), StateDirectory + " (keys, prefs, netmap cache) outlived the purge");
        Assert.False(Directory.Exists("/usr/share/doc/weft-agent"));
    }

    [SkippableFact]
    public async Task The_arm64_package_carries_an_aarch64_binary_and_the_same_unit()
    {
        // Built here and read, not run: this machine is x86-64.
        await using var lab = LabTest.Open("dpkg-deb", "git");
        var deb = BuildPackage("arm64", Path.Combine(lab.Directory, "deb"));
        var unpacked = Path.Combine(lab.Directory, "arm64");
        Lab.Lab.Run("dpkg-deb", "--extract", deb, unpacked);

        Assert.Contains("Architecture: arm64", Lab.Lab.Run("dpkg-deb", "--field", deb, "Architecture") is var arch ? "Architecture: " + arch.Trim() : "");
        var header = new byte[20];
        await using (var binary = File.OpenRead(Path.Combine(unpacked, "usr", "bin", "weft-agent"))) await binary.ReadExactlyAsync(header);
        Assert.Equal("\u007fELF"u8.ToArray(), header[..4]);
        Assert.Equal(183, BitConverter.ToUInt16(header, 18)); // e_machine EM_AARCH64
        Assert.Contains("ExecStart=/usr/bin/weft-agent daemon ", File.ReadAllText(Path.Combine(unpacked, "lib", "systemd", "system", "weft-agent.service")));
    }

    [Fact]
    public void A_compression_the_build_does_not_know_is_refused_before_anything_is_built()
    {
        var folder = Directory.CreateTempSubdirectory("weft-deb-refused-").FullName;
        try
        {
            var refused = Assert.Throws<LabException>(() => Lab.Lab.Run("env", "WEFT_DEB_COMPRESSION=lzma", Path.Combine(Root(), "deploy", "deb", "build"), "amd64", folder));
            Assert.Contains("(2): error: WEFT_DEB_COMPRESSION 'lzma' is not xz or gzip-fast", refused.Message);
            Assert.Empty(Directory.GetFileSystemEntries(folder));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// deploy/deb/build as a release runs it, except for the compression: gzip-fast builds the package in
    /// 2 s where xz (the release default) takes about 30 s of this machine's two cores. What the package
    /// holds and how it installs do not depend on it.
    /// </summary>
    private static string BuildPackage(string architecture, string folder) =>
        Lab.Lab.Run("env", "WEFT_DEB_COMPRESSION=gzip-fast", Path.Combine(Root(), "deploy", "deb", "build"), architecture, folder).Trim().Split('\n')[^1];

    /// <summary>The member names of a .deb, which is an ar archive: a 60-byte header (name, ..., decimal size at 48) before each member, padded to even.</summary>
    private static List<string> ArchiveMembers(string deb)
    {
        var bytes = File.ReadAllBytes(deb);
        Assert.Equal("!<arch>\n"u8.ToArray(), bytes[..8]);
        var names = new List<string>();
        for (var at = 8; at + 60 <= bytes.Length;)
        {
            names.Add(System.Text.Encoding.ASCII.GetString(bytes, at, 16).Trim().TrimEnd('/'));
            var size = long.Parse(System.Text.Encoding.ASCII.GetString(bytes, at + 48, 10).Trim());
            at += 60 + (int)(size + size % 2);
        }
        return names;
    }

    /// <summary>The unit's ExecStart as systemd would run it: its Environment values and the state directory filled in.</summary>
    private static List<string> UnitCommandLine(string unit, string extractDirectory)
    {
        var environment = new Dictionary<string, string> { ["STATE_DIRECTORY"] = StateDirectory };
        foreach (Match line in Regex.Matches(unit, @"^Environment=(.+)$", RegexOptions.Multiline))
            foreach (var pair in line.Groups[1].Value.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries))
                environment[pair[..pair.IndexOf('=')]] = pair[(pair.IndexOf('=') + 1)..];
        Assert.Equal("/tmp", environment["DOTNET_BUNDLE_EXTRACT_BASE_DIR"]); // PrivateTmp=yes makes that the unit's own
        environment["DOTNET_BUNDLE_EXTRACT_BASE_DIR"] = extractDirectory;
        var exec = Regex.Match(unit, @"^ExecStart=(.+)$", RegexOptions.Multiline).Groups[1].Value.Trim();
        var words = exec.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(w => Regex.Replace(w, @"\$\{(\w+)\}", m => environment[m.Groups[1].Value])).ToList();
        return ["env", .. environment.Select(e => $"{e.Key}={e.Value}"), .. words];
    }

    private static bool Installed() => Status().Contains("install ok installed");

    /// <summary>dpkg knows the package in any state: installed, half-installed by an interrupted <c>dpkg -i</c>, or its config files kept.</summary>
    private static bool Known() => Status() is var status && status != "" && !status.EndsWith("not-installed");

    private static string Status()
    {
        try
        {
            return Lab.Lab.Run("dpkg-query", "-W", "-f=${Status}", "weft-agent").Trim();
        }
        catch (LabException)
        {
            return ""; // dpkg-query fails for a package it never heard of
        }
    }

    /// <summary>Purges what this test installed (in whatever state dpkg left it), then drops the marker.</summary>
    private static void PurgeOwn()
    {
        if (Known()) Lab.Lab.Run("dpkg", "--purge", "weft-agent");
        if (!Known()) File.Delete(OwnInstallMarker);
    }

    private static string Root()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Cluster.sln"))) directory = directory.Parent;
        return directory?.FullName ?? throw new InvalidOperationException("Cluster.sln not found above the test output");
    }
}
