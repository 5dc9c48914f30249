using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.NodeAgent.Dns;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>
/// MagicDNS through systemd-resolved. resolved itself cannot run in CI's container (no systemd, and
/// installing it would take over the machine's own /etc/resolv.conf), so these tests check Weft's
/// side against a stand-in resolvectl that records what it is told: the commands, their order,
/// revert, and a refusal. Which manager is chosen is checked on real files and symlinks.
/// </summary>
public sealed class ResolvedLinkTests : IDisposable
{
    private static readonly IPAddress MagicDns = IPAddress.Parse("100.64.0.1");
    private readonly string _folder = Directory.CreateTempSubdirectory("weft-resolved-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Calls => Path.Combine(_folder, "calls");

    /// <summary>A resolvectl that appends its arguments to a file and exits with <paramref name="exitCode"/> (saying why on stderr).</summary>
    private string FakeResolvectl(int exitCode = 0)
    {
        var path = Path.Combine(_folder, "resolvectl");
        File.WriteAllText(path, $"#!/bin/sh\necho \"$*\" >> '{Calls}'\n[ {exitCode} -eq 0 ] || echo 'Failed to set DNS configuration: Link weft0 not known' >&2\nexit {exitCode}\n");
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        return path;
    }

    [Fact]
    public void The_tunnel_link_gets_magicdns_and_the_suffix_and_is_never_the_default_route_and_revert_undoes_it()
    {
        var link = new ResolvedLink("weft0", FakeResolvectl(), NullLogger.Instance);

        link.Apply(MagicDns, "acme.weft.internal");
        link.Apply(MagicDns, "acme.weft.internal"); // every netmap: told once

        Assert.Equal(["dns weft0 100.64.0.1", "domain weft0 acme.weft.internal", "default-route weft0 false"], File.ReadAllLines(Calls));
        Assert.Equal(("systemd-resolved", "100.64.0.1"), (link.Status.Mode, link.Status.Nameserver));
        Assert.Empty(link.Upstreams); // resolved sends other names where it did

        link.Restore();
        link.Restore();

        Assert.Equal("revert weft0", File.ReadAllLines(Calls)[^1]);
        Assert.Equal(4, File.ReadAllLines(Calls).Length);
        Assert.Equal("off", link.Status.Mode);
    }

    [Fact]
    public void A_refusal_is_shown_with_resolvectls_words_and_nothing_is_reverted_later()
    {
        var link = new ResolvedLink("weft0", FakeResolvectl(exitCode: 1), NullLogger.Instance);

        link.Apply(MagicDns, "acme.weft.internal");

        Assert.Equal("refused", link.Status.Mode);
        Assert.Contains("Link weft0 not known", link.Status.Problem);
        link.Restore();
        Assert.Single(File.ReadAllLines(Calls)); // the one refused call, no revert of what was never set
    }

    [Fact]
    public void Resolved_is_chosen_only_when_it_owns_resolv_conf()
    {
        var run = Path.Combine(_folder, "run", "systemd", "resolve");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "stub-resolv.conf"), "nameserver 127.0.0.53\n");
        var owned = Path.Combine(_folder, "owned.conf");
        File.CreateSymbolicLink(owned, Path.Combine(run, "stub-resolv.conf"));
        var plain = Path.Combine(_folder, "plain.conf");
        File.WriteAllText(plain, "nameserver 198.18.0.53\n");
        var path = Environment.GetEnvironmentVariable("PATH");
        Environment.SetEnvironmentVariable("PATH", _folder + ":" + path);
        try
        {
            FakeResolvectl();
            Assert.IsType<ResolvedLink>(SystemResolvers.Choose(owned, "weft0", _folder, NullLogger.Instance, run));
            Assert.IsType<ResolvConfFile>(SystemResolvers.Choose(plain, "weft0", _folder, NullLogger.Instance, run));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PATH", path);
        }
        // Without resolvectl to talk to it, the symlink is left alone by the file manager (which refuses it).
        Assert.IsType<ResolvConfFile>(SystemResolvers.Choose(owned, "weft0", _folder, NullLogger.Instance, Path.Combine(_folder, "elsewhere")));
    }
}
