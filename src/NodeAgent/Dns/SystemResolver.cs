using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Weft.NodeAgent.Dns;

/// <summary>What the system's resolver was told to do for MagicDNS (<c>weft-agent dns status</c>).</summary>
/// <param name="Mode">
/// <c>resolv.conf</c> or <c>systemd-resolved</c> (configured), <c>off</c> (not configured: down, or
/// --accept-dns=false), or <c>refused</c> (another manager owns the file, or resolved refused the settings).
/// </param>
/// <param name="File">What is managed: the resolv.conf path, or the interface resolved was told about.</param>
public sealed record SystemDnsStatus(string Mode, string File, string? Nameserver, IReadOnlyList<string> SearchDomains, IReadOnlyList<string> Upstreams, string? Backup, string? Problem);

/// <summary>How MagicDNS becomes the system's resolver, and how it stops being it. Never throws: problems go into <see cref="Status"/>.</summary>
public interface ISystemResolver
{
    SystemDnsStatus Status { get; }

    /// <summary>Where MagicDNS forwards names outside the tailnet (none when the system's resolver does that itself).</summary>
    IReadOnlyList<IPEndPoint> Upstreams { get; }

    void Apply(IPAddress nameserver, string suffix);

    /// <summary>
    /// Makes sure that what <see cref="Apply"/> set still holds, and sets it again if another program undid
    /// it since (a DHCP client renewing its lease rewrites resolv.conf). Called every few seconds while
    /// MagicDNS is the system's resolver. Never throws.
    /// </summary>
    void Recheck();

    void Restore();
}

public static class SystemResolvers
{
    /// <summary>
    /// systemd-resolved when it owns <paramref name="resolvConf"/> (a symlink into its run folder) and
    /// <c>resolvectl</c> is there to talk to it; otherwise the file itself.
    /// </summary>
    public static ISystemResolver Choose(string resolvConf, string interfaceName, string stateDirectory, ILogger log, string runFolder = ResolvedLink.RunFolder)
    {
        var target = new FileInfo(resolvConf).LinkTarget;
        if (target is not null && System.IO.Path.GetFullPath(target, System.IO.Path.GetDirectoryName(resolvConf)!).StartsWith(runFolder + "/", StringComparison.Ordinal)
            && ResolvedLink.FindResolvectl() is { } resolvectl)
            return new ResolvedLink(interfaceName, resolvectl, log);
        return new ResolvConfFile(resolvConf, stateDirectory, log);
    }
}

/// <summary>
/// MagicDNS through systemd-resolved, as Tailscale does it: the tunnel interface gets MagicDNS as
/// its DNS server and the tailnet's suffix as its search domain (so resolved sends the tailnet's names
/// there and qualifies short names with it), and is never the default route for other names, which
/// resolved keeps sending where it did. Told with <c>resolvectl</c>; <c>revert</c> undoes it, and
/// resolved forgets it by itself when the interface goes.
/// </summary>
public sealed class ResolvedLink(string interfaceName, string resolvectl, ILogger log) : ISystemResolver
{
    public const string RunFolder = "/run/systemd/resolve";
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);
    private readonly object _gate = new();
    private (IPAddress Nameserver, string Suffix)? _applied;
    private string? _problem;

    /// <summary>resolvectl on the PATH, or null.</summary>
    public static string? FindResolvectl() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => System.IO.Path.Combine(d, "resolvectl")).FirstOrDefault(File.Exists);

    public IReadOnlyList<IPEndPoint> Upstreams => [];

    public SystemDnsStatus Status
    {
        get
        {
            lock (_gate)
            {
                if (_problem is not null) return new SystemDnsStatus("refused", interfaceName, null, [], [], null, _problem);
                return _applied is { } applied
                    ? new SystemDnsStatus("systemd-resolved", interfaceName, applied.Nameserver.ToString(), [applied.Suffix], [], null, null)
                    : new SystemDnsStatus("off", interfaceName, null, [], [], null, null);
            }
        }
    }

    public void Apply(IPAddress nameserver, string suffix)
    {
        lock (_gate)
        {
            if (_applied is { } applied && applied.Nameserver.Equals(nameserver) && applied.Suffix == suffix) return;
            var problem = Run("dns", interfaceName, nameserver.ToString()) ?? Run("domain", interfaceName, suffix);
            if (problem is not null)
            {
                if (problem != _problem) log.LogWarning("systemd-resolved did not take MagicDNS for {Interface}: {Problem}", interfaceName, problem);
                _problem = problem;
                _applied = null;
                return;
            }
            // Older resolvectl has no default-route verb; without it resolved still routes by domain.
            Run("default-route", interfaceName, "false");
            _applied = (nameserver, suffix);
            _problem = null;
            log.LogInformation("MagicDNS is the system's resolver for {Suffix} through systemd-resolved ({Interface}: DNS {Nameserver})", suffix, interfaceName, nameserver);
        }
    }

    /// <summary>systemd-resolved keeps a link's DNS for as long as the link exists, and no other program sets it for a Weft link.</summary>
    public void Recheck()
    {
    }

    public void Restore()
    {
        lock (_gate)
        {
            _problem = null;
            if (_applied is null) return;
            _applied = null;
            if (Run("revert", interfaceName) is { } problem) log.LogWarning("systemd-resolved did not revert {Interface}: {Problem}", interfaceName, problem);
            else log.LogInformation("MagicDNS is no longer the system's resolver: systemd-resolved reverted {Interface}", interfaceName);
        }
    }

    /// <summary>Runs resolvectl; null on success, else what went wrong in its words.</summary>
    private string? Run(params string[] arguments)
    {
        var info = new System.Diagnostics.ProcessStartInfo(resolvectl) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        try
        {
            using var process = System.Diagnostics.Process.Start(info)!;
            var error = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(CommandTimeout))
            {
                process.Kill();
                return $"resolvectl {string.Join(' ', arguments)} did not finish in {CommandTimeout.TotalSeconds:0} s";
            }
            return process.ExitCode == 0 ? null : $"resolvectl {string.Join(' ', arguments)}: {error.Result.Trim()} (exit {process.ExitCode})";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"cannot run {resolvectl}: {e.Message}";
        }
    }
}

/// <summary>
/// Points the system's resolver at MagicDNS by managing <c>/etc/resolv.conf</c> the careful way:
/// <list type="bullet">
/// <item>It never touches a file another manager owns (a symlink, as systemd-resolved and resolvconf
/// make it, or a file NetworkManager or resolvconf generated): it says so in <see cref="Status"/> instead.</item>
/// <item>Before the first change it keeps the original (<see cref="BackupPath"/>, in the agent's state
/// directory), and puts it back on <see cref="Restore"/> (<c>down</c>, logout, exit). A daemon that
/// died with the file still its own restores it when it starts again.</item>
/// <item>It writes MagicDNS's address as the only nameserver, the tailnet's suffix first among the
/// search domains (so <c>beta</c> finds <c>beta.&lt;suffix&gt;</c>), and keeps the original's other search
/// domains and options. The original's nameservers become MagicDNS's upstreams (<see cref="Upstreams"/>),
/// where it forwards every name outside the tailnet.</item>
/// </list>
/// The file is rewritten in place rather than renamed over: in a network namespace (and in many
/// containers) it is a bind mount, which a rename cannot replace.
/// </summary>
public sealed class ResolvConfFile : ISystemResolver
{
    public const string Marker = "# Written by weft-agent for MagicDNS.";
    public const string DefaultPath = "/etc/resolv.conf";
    public const string BackupName = "resolv.conf.pre-weft";
    private const int MaxBytes = 64 * 1024;

    private readonly ILogger _log;
    private readonly object _gate = new();
    private (IPAddress Nameserver, string Suffix)? _applied;
    private IReadOnlyList<IPEndPoint> _upstreams = [];
    private IReadOnlyList<string> _search = [];
    private string? _problem;

    public ResolvConfFile(string path, string stateDirectory, ILogger log)
    {
        Path = path;
        BackupPath = System.IO.Path.Combine(stateDirectory, BackupName);
        _log = log;
        // A daemon that died while the file was ours: put the original back before anything else.
        lock (_gate)
        {
            if (File.Exists(BackupPath) && IsOursOrTorn(ReadOrEmpty(path))) PutBack();
        }
    }

    public string Path { get; }

    public string BackupPath { get; }

    /// <summary>Where MagicDNS forwards names outside the tailnet: the original file's nameservers (port 53).</summary>
    public IReadOnlyList<IPEndPoint> Upstreams
    {
        get { lock (_gate) return _upstreams; }
    }

    public SystemDnsStatus Status
    {
        get
        {
            lock (_gate)
            {
                if (_problem is not null) return new SystemDnsStatus("refused", Path, null, [], [], null, _problem);
                if (_applied is not { } applied) return new SystemDnsStatus("off", Path, null, [], [], null, null);
                return new SystemDnsStatus("resolv.conf", Path, applied.Nameserver.ToString(), _search, [.. _upstreams.Select(u => u.ToString())], BackupPath, null);
            }
        }
    }

    /// <summary>Makes <paramref name="nameserver"/> the system's resolver, with <paramref name="suffix"/> searched first. Never throws: a problem goes into <see cref="Status"/> and the log.</summary>
    public void Apply(IPAddress nameserver, string suffix)
    {
        lock (_gate)
        {
            if (_applied is { } applied && applied.Nameserver.Equals(nameserver) && applied.Suffix == suffix) return;
            try
            {
                var current = ReadOrEmpty(Path);
                string original;
                if (IsOursOrTorn(current) && File.Exists(BackupPath))
                {
                    original = ReadOrEmpty(BackupPath);
                }
                else
                {
                    if (Owner(Path, current) is { } owner)
                    {
                        Refuse($"{Path} is {owner}: MagicDNS leaves it alone (ask it directly: dig @{nameserver} <name>.{suffix})");
                        return;
                    }
                    original = current;
                    WriteBackup(original);
                }
                var parsed = ResolvConf.Parse(original);
                _upstreams = [.. parsed.Nameservers.Where(a => !a.Equals(nameserver)).Select(a => new IPEndPoint(a, 53))];
                _search = [suffix, .. parsed.Search.Where(s => !string.Equals(s, suffix, StringComparison.OrdinalIgnoreCase))];
                var text = $"""
                    {Marker}
                    # The original is kept in {BackupPath}; weft-agent puts it back on down, logout and exit.
                    nameserver {nameserver}
                    search {string.Join(' ', _search)}

                    """ + string.Concat(parsed.Options.Select(o => o + "\n"));
                WriteInPlace(Path, text);
                _applied = (nameserver, suffix);
                _problem = null;
                _log.LogInformation("MagicDNS is the system's resolver ({Path}): nameserver {Nameserver}, search {Search}; other names go to {Upstreams}",
                    Path, nameserver, string.Join(' ', _search), _upstreams.Count == 0 ? "nobody (the original had no nameserver)" : string.Join(", ", _upstreams));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Refuse($"cannot write {Path}: {e.Message}");
            }
        }
    }

    /// <summary>
    /// Takes the file over again when another program rewrote it while it was MagicDNS's (dhclient does on
    /// every lease renewal): what that program wrote becomes the new original, kept as the backup and put
    /// back on <see cref="Restore"/>, and its nameservers become the upstreams. A file another manager now
    /// owns is left to it, as on <see cref="Apply"/>. Never throws.
    /// </summary>
    public void Recheck()
    {
        lock (_gate)
        {
            if (_applied is not { } applied) return;
            string current;
            try
            {
                current = ReadOrEmpty(Path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return; // read again at the next check
            }
            if (IsOurs(current)) return;
            _log.LogInformation("{Path} was rewritten by another program while MagicDNS was the system's resolver; taking the new one as the original", Path);
            // The old original is stale: Apply keeps what the file holds now, or leaves it to the manager that owns it.
            try
            {
                File.Delete(BackupPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
            _applied = null;
            Apply(applied.Nameserver, applied.Suffix);
        }
    }

    /// <summary>Puts the original file back, if this agent changed it. Never throws.</summary>
    public void Restore()
    {
        lock (_gate)
        {
            _problem = null;
            if (_applied is null) return;
            _applied = null;
            _upstreams = [];
            _search = [];
            try
            {
                if (IsOurs(ReadOrEmpty(Path))) PutBack();
                else File.Delete(BackupPath); // someone else rewrote it since: theirs stays
                _log.LogInformation("MagicDNS is no longer the system's resolver: {Path} is as it was", Path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.LogWarning("Cannot restore {Path} from {Backup}: {Problem}", Path, BackupPath, e.Message);
            }
        }
    }

    private void PutBack()
    {
        WriteInPlace(Path, ReadOrEmpty(BackupPath));
        File.Delete(BackupPath);
    }

    private void Refuse(string problem)
    {
        if (problem != _problem) _log.LogWarning("MagicDNS does not configure the system's resolver: {Problem}", problem);
        _problem = problem;
        _applied = null;
        _upstreams = [];
    }

    private void WriteBackup(string original)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(BackupPath)!);
        Control.PrivateFile.Replace(BackupPath, stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(original)));
    }

    public static bool IsOurs(string text) => text.StartsWith(Marker, StringComparison.Ordinal);

    /// <summary>
    /// Ours, or empty while a backup says it was ours: the file is rewritten in place (it may be a bind
    /// mount, which a rename cannot replace), so a daemon that died between emptying it and writing it
    /// left it empty. Taken for the original, that would be kept as the backup, and the machine's
    /// nameservers lost for good.
    /// </summary>
    private static bool IsOursOrTorn(string text) => IsOurs(text) || string.IsNullOrWhiteSpace(text);

    /// <summary>Who else manages the file, in words; null when no one seems to.</summary>
    public static string? Owner(string path, string text)
    {
        var info = new FileInfo(path);
        if (info.Exists && info.LinkTarget is { } target) return $"a symlink to {target} (systemd-resolved or resolvconf manages it)";
        if (text.Contains("Generated by NetworkManager", StringComparison.Ordinal)) return "generated by NetworkManager";
        if (text.Contains("resolvconf(8)", StringComparison.Ordinal)) return "generated by resolvconf";
        if (text.Contains("generated by netconfig", StringComparison.OrdinalIgnoreCase)) return "generated by netconfig";
        return null;
    }

    private static string ReadOrEmpty(string path)
    {
        if (!File.Exists(path)) return "";
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        if (stream.Length > MaxBytes) throw new IOException($"{path} is {stream.Length} bytes; a resolv.conf is at most {MaxBytes}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static void WriteInPlace(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write);
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        stream.SetLength(0);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }
}

/// <summary>The parts of a resolv.conf MagicDNS reads: nameservers, search domains and options (resolv.conf(5)).</summary>
public sealed record ResolvConf(IReadOnlyList<IPAddress> Nameservers, IReadOnlyList<string> Search, IReadOnlyList<string> Options)
{
    /// <summary>Reads what it understands and skips the rest, as the C library does: a bad line never stops it.</summary>
    public static ResolvConf Parse(string text)
    {
        var nameservers = new List<IPAddress>();
        var search = new List<string>();
        var options = new List<string>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';') continue;
            var words = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            switch (words[0])
            {
                case "nameserver" when words.Length > 1 && IPAddress.TryParse(words[1].Split('%')[0], out var address) && address.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6:
                    nameservers.Add(address);
                    break;
                case "search" or "domain":
                    search.Clear(); // the last search or domain line wins
                    search.AddRange(words.Skip(1).Where(w => w.Length <= 253));
                    break;
                case "options":
                    options.Add(line);
                    break;
            }
        }
        return new ResolvConf(nameservers, search, options);
    }
}
