using System.Diagnostics;
using Weft.NodeAgent.Standalone;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Net;

/// <summary>
/// Gives a TUN interface its addresses, MTU and routes, as wg-quick does, through iproute2's
/// <c>ip</c>. Routes go to the interface for every allowed IP except default routes, which would
/// need wg-quick's policy-routing tricks.
/// </summary>
public static class LinkConfigurator
{
    public static void Up(string interfaceName, int mtu, IEnumerable<InterfaceAddress> addresses, IEnumerable<IpPrefix> routes)
    {
        Ip("link", "set", "dev", interfaceName, "mtu", mtu.ToString(), "up");
        foreach (var address in addresses)
            Ip(address.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "-6" : "-4",
                "address", "add", address.ToString(), "dev", interfaceName);
        foreach (var route in routes.Where(r => r.Length > 0).Distinct())
            Ip(route.IsIPv4 ? "-4" : "-6", "route", "replace", route.ToString(), "dev", interfaceName);
    }

    /// <summary>Runs <c>ip</c> with the given arguments, and returns what it printed; a failure is an exception carrying ip's own message.</summary>
    public static string Ip(params string[] arguments) => Run("ip", "iproute2", null, arguments);

    /// <summary>A tool that has not finished by then (a kernel lock held elsewhere) is killed, and its call fails.</summary>
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Runs a system tool (<c>ip</c>, <c>nft</c>), with <paramref name="input"/> on its standard input
    /// when given, and returns its standard output. A tool that is missing, fails or hangs is an
    /// <see cref="IOException"/> with its own message.
    /// </summary>
    public static string Run(string program, string package, string? input, params string[] arguments)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = input is not null, UseShellExecute = false,
        };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new IOException($"cannot run {program} (is {package} installed?)");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new IOException($"cannot run {program} (is {package} installed?): {e.Message}", e);
        }
        using var _ = process;
        if (input is not null)
        {
            process.StandardInput.Write(input);
            process.StandardInput.Close();
        }
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(ToolTimeout))
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } // it ended just now
            throw new IOException($"{program} {string.Join(' ', arguments)}: did not finish within {ToolTimeout.TotalSeconds:0} s");
        }
        process.WaitForExit(); // and its output is read to the end
        if (process.ExitCode != 0) throw new IOException($"{program} {string.Join(' ', arguments)}: {error.Result.Trim()}");
        return output.Result;
    }
}
