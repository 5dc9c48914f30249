using System.Diagnostics;
using System.Security.Cryptography;

namespace Weft.Lab;

/// <summary>
/// Real networks on one machine: network namespaces joined by veth pairs, with underlay addresses
/// from 198.18.0.0/15. Everything a lab creates (namespaces, processes, files, UAPI sockets) is
/// removed when it is disposed, on success and on failure. Needs root.
/// </summary>
public sealed class Lab : IAsyncDisposable
{
    /// <summary>Every lab's names start with this, so leftovers of a killed run can be found and removed.</summary>
    public const string NamePrefix = "wl";

    private readonly List<Namespace> _namespaces = new();
    private readonly List<LabProcess> _processes = new();
    private readonly List<string> _files = new();
    private int _links;

    private Lab(string id)
    {
        Id = id;
        Directory = Path.Combine(Path.GetTempPath(), "weft-lab-" + id);
        System.IO.Directory.CreateDirectory(Directory);
    }

    /// <summary>Short and unique: interface names (at most 15 characters) are built from it.</summary>
    public string Id { get; }

    public string Directory { get; }

    public static Lab Create()
    {
        LabPrerequisites.RequireRoot();
        var random = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        return new Lab(NamePrefix + random);
    }

    public Namespace AddNamespace(string role)
    {
        var ns = new Namespace(this, $"{Id}{role}");
        // Every command run in the namespace (ip netns exec) sees this file as /etc/resolv.conf: an
        // agent that manages it changes the namespace's, never the machine's.
        System.IO.Directory.CreateDirectory(ns.EtcDirectory);
        File.WriteAllText(ns.ResolvConf, $"# weft lab namespace {ns.Name}: no resolver until a test sets one\n");
        Run("ip", "netns", "add", ns.Name);
        _namespaces.Add(ns);
        ns.Run("ip", "link", "set", "lo", "up");
        return ns;
    }

    /// <summary>Joins two namespaces with a veth pair and gives each end an address (CIDR form).</summary>
    /// <param name="mtu">The link's MTU on both ends (null: the veth default, 1500).</param>
    public (string A, string B) Connect(Namespace a, string addressA, Namespace b, string addressB, int? mtu = null)
    {
        var index = Interlocked.Increment(ref _links);
        var endA = $"{Id}v{index}a";
        var endB = $"{Id}v{index}b";
        Run("ip", "link", "add", endA, "netns", a.Name, "type", "veth", "peer", "name", endB, "netns", b.Name);
        if (mtu is { } size)
        {
            a.Run("ip", "link", "set", endA, "mtu", size.ToString());
            b.Run("ip", "link", "set", endB, "mtu", size.ToString());
        }
        a.Run("ip", "address", "add", addressA, "dev", endA);
        b.Run("ip", "address", "add", addressB, "dev", endB);
        a.Run("ip", "link", "set", endA, "up");
        b.Run("ip", "link", "set", endB, "up");
        return (endA, endB);
    }

    public string WriteFile(string name, string contents)
    {
        var path = Path.Combine(Directory, name);
        File.WriteAllText(path, contents);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    /// <summary>Registers a file outside the lab folder to delete at the end (e.g. a UAPI socket).</summary>
    public void RemoveOnDispose(string path) => _files.Add(path);

    internal LabProcess Track(LabProcess process)
    {
        lock (_processes) _processes.Add(process);
        return process;
    }

    /// <summary>Every process's description and output so far, for failure messages.</summary>
    public string ProcessOutputs()
    {
        LabProcess[] processes;
        lock (_processes) processes = _processes.ToArray();
        return string.Join("\n", processes.Select(p => $"=== {p.Description}{(p.HasExited ? " (exited)" : "")}\n{Tail(p.Output, 8000)}"));
    }

    private static string Tail(string text, int length) => text.Length <= length ? text : "…" + text[^length..];

    /// <summary>Runs a command in the root namespace and returns its output; a non-zero exit is an exception with the output.</summary>
    public static string Run(params string[] command) => RunIn(null, command);

    internal static string RunIn(string? ns, string[] command)
    {
        var info = StartInfo(ns, command);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        using var process = Process.Start(info) ?? throw new LabException($"could not run {string.Join(' ', command)}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new LabException($"{Describe(ns, command)} did not finish in 120 s");
        }
        if (process.ExitCode != 0)
            throw new LabException($"{Describe(ns, command)} failed ({process.ExitCode}): {stderr.Result.Trim()} {stdout.Result.Trim()}");
        return stdout.Result;
    }

    internal static ProcessStartInfo StartInfo(string? ns, string[] command)
    {
        var info = new ProcessStartInfo(ns is null ? command[0] : "ip") { UseShellExecute = false };
        if (ns is not null)
        {
            info.ArgumentList.Add("netns");
            info.ArgumentList.Add("exec");
            info.ArgumentList.Add(ns);
            info.ArgumentList.Add(command[0]);
        }
        foreach (var argument in command.Skip(1)) info.ArgumentList.Add(argument);
        return info;
    }

    private static string Describe(string? ns, string[] command) =>
        (ns is null ? "" : $"[{ns}] ") + string.Join(' ', command);

    public async ValueTask DisposeAsync()
    {
        LabProcess[] processes;
        lock (_processes) processes = _processes.ToArray();
        // A process that fails to stop must not keep the namespaces: a lab left behind keeps its host
        // addresses (198.18.0.254 of a hub, say), and every later lab that takes them is cut off.
        var failures = new List<Exception>();
        foreach (var process in processes.Reverse())
        {
            try { process.Stop(TimeSpan.FromSeconds(3)); }
            catch (Exception e) when (e is InvalidOperationException or LabException or System.ComponentModel.Win32Exception)
            {
                failures.Add(new LabException($"could not stop {process.Description}: {e.Message}"));
                process.Dispose();
            }
        }
        foreach (var ns in _namespaces)
        {
            try { Run("ip", "netns", "delete", ns.Name); }
            catch (LabException) { }
            try { System.IO.Directory.Delete(ns.EtcDirectory, recursive: true); }
            catch (IOException) { }
        }
        foreach (var file in _files)
        {
            try { File.Delete(file); } catch (IOException) { }
        }
        // /etc/netns itself, once no lab's namespace needs it (a non-recursive delete refuses a folder in use).
        try { System.IO.Directory.Delete(Namespace.EtcRoot); } catch (IOException) { }
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
        await Task.CompletedTask;
        if (failures.Count > 0) throw new AggregateException("the lab was removed, but not every process stopped cleanly", failures);
    }

    /// <summary>Removes what a killed run left behind: namespaces and UAPI sockets with the lab prefix.</summary>
    public static void RemoveLeftovers()
    {
        foreach (var line in Run("ip", "netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            if (name.StartsWith(NamePrefix, StringComparison.Ordinal)) Run("ip", "netns", "delete", name);
        }
        if (System.IO.Directory.Exists(Namespace.EtcRoot))
            foreach (var etc in System.IO.Directory.GetDirectories(Namespace.EtcRoot, NamePrefix + "*")) System.IO.Directory.Delete(etc, recursive: true);
    }
}

/// <summary>One network namespace of a lab: a "machine".</summary>
public sealed class Namespace(Lab lab, string name)
{
    public Lab Lab { get; } = lab;

    public string Name { get; } = name;

    /// <summary>Where <c>ip netns exec</c> finds files to bind over <c>/etc</c> for this namespace.</summary>
    public const string EtcRoot = "/etc/netns";

    public string EtcDirectory => Path.Combine(EtcRoot, Name);

    /// <summary>The namespace's own /etc/resolv.conf, as seen from outside it.</summary>
    public string ResolvConf => Path.Combine(EtcDirectory, "resolv.conf");

    public string Run(params string[] command) => Lab.RunIn(Name, command);

    public LabProcess Start(string description, params string[] command) =>
        Lab.Track(new LabProcess($"{description} [{Name}]", Lab.StartInfo(Name, command)));

    public override string ToString() => Name;
}

public static class LabPrerequisites
{
    public static bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();

    /// <summary>Throws <see cref="LabUnavailableException"/> when not root (tests turn that into a skip, or a failure in CI).</summary>
    public static void RequireRoot()
    {
        if (!IsRoot) throw new LabUnavailableException("needs root: it creates network namespaces, veth links and TUN devices");
    }

    public static void RequireTools(params string[] tools)
    {
        foreach (var tool in tools)
        {
            var found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, tool)));
            if (!found) throw new LabUnavailableException($"needs '{tool}' on PATH (./test.sh installs it)");
        }
    }
}

public sealed class LabUnavailableException(string reason) : Exception(reason);
