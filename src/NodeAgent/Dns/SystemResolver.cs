using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Weft.NodeAgent.Dns;

/// <summary>What the system's resolver was told to do for MagicDNS (<c>weft-agent dns status</c>).</summary>
/// <param name="Mode"><c>resolv.conf</c>, <c>off</c> (not configured: down, or --accept-dns=false), or <c>refused</c> (another manager owns the file).</param>
public sealed record SystemDnsStatus(string Mode, string File, string? Nameserver, IReadOnlyList<string> SearchDomains, IReadOnlyList<string> Upstreams, string? Backup, string? Problem);

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
public sealed class ResolvConfFile
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
            if (File.Exists(BackupPath) && IsOurs(ReadOrEmpty(path))) PutBack();
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
                if (IsOurs(current) && File.Exists(BackupPath))
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
