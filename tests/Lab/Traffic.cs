using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Weft.Lab;

/// <summary>ping and iperf3 between lab machines.</summary>
public static partial class Traffic
{
    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex PingSummary();

    /// <summary>Sends <paramref name="count"/> pings and returns how many were answered (never throws on loss).</summary>
    public static int Ping(Namespace from, string address, int count, double intervalSeconds = 0.2, int waitSeconds = 2)
    {
        string output;
        try
        {
            output = from.Run("ping", "-n", "-c", count.ToString(), "-i", intervalSeconds.ToString(CultureInfo.InvariantCulture),
                "-W", waitSeconds.ToString(), address);
        }
        catch (LabException e)
        {
            output = e.Message; // ping exits 1 when some packets were lost; the summary is still in its output
        }
        return Answered(output);
    }

    /// <summary>
    /// Pings with Don't Fragment set and <paramref name="payload"/> bytes of ICMP data (the IPv4
    /// packet is 28 bytes more); returns ping's whole output, whatever became of the packets.
    /// </summary>
    public static string PingDontFragment(Namespace from, string address, int payload, int count)
    {
        try
        {
            return from.Run("ping", "-n", "-M", "do", "-s", payload.ToString(CultureInfo.InvariantCulture), "-c", count.ToString(CultureInfo.InvariantCulture),
                "-i", "0.2", "-W", "2", address);
        }
        catch (LabException e)
        {
            return e.Message; // ping exits non-zero when a packet was lost or refused; its output is in the message
        }
    }

    /// <summary>How many pings the output of a ping run says were answered.</summary>
    public static int Answered(string pingOutput) =>
        PingSummary().Match(pingOutput) is { Success: true } match ? int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : 0;

    /// <summary>
    /// Pings once a second until a reply comes back or <paramref name="timeout"/> passes. For paths
    /// that need a moment to heal (a new handshake after a move). Returns how long it took, or null.
    /// </summary>
    public static TimeSpan? PingUntilAnswered(Namespace from, string address, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (Ping(from, address, 1, waitSeconds: 1) == 1) return clock.Elapsed;
        }
        return null;
    }

    /// <summary>Starts a ping that runs until stopped; its summary tells the loss.</summary>
    public static LabProcess StartPing(Namespace from, string address, double intervalSeconds = 0.1) =>
        from.Start("ping", "ping", "-n", "-i", intervalSeconds.ToString(CultureInfo.InvariantCulture), address);

    /// <summary>Stops a <see cref="StartPing"/> the way a user does (Ctrl-C, which makes ping print its summary) and returns (transmitted, received).</summary>
    public static (int Transmitted, int Received) StopPing(LabProcess ping)
    {
        ping.Stop(TimeSpan.FromSeconds(3), "INT");
        // The output is read asynchronously: the summary may land a moment after the process ended.
        var match = PingSummary().Match(ping.Output);
        for (var wait = 0; !match.Success && wait < 40; wait++)
        {
            Thread.Sleep(50);
            match = PingSummary().Match(ping.Output);
        }
        if (!match.Success) throw new LabException($"no ping summary in:\n{ping.Output}");
        return (int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>TCP throughput from client to server (or back, with <paramref name="reverse"/>) in Mbit/s, as the receiver measured it.</summary>
    public static double Iperf(Namespace server, string serverAddress, Namespace client, TimeSpan duration, bool reverse = false)
    {
        LabPrerequisites.RequireTools("iperf3");
        var port = Random.Shared.Next(20000, 30000).ToString();
        var listener = server.Start("iperf3 server", "iperf3", "-s", "-1", "--forceflush", "-B", serverAddress, "-p", port);
        listener.WaitForOutput("Server listening", TimeSpan.FromSeconds(10));
        var arguments = new List<string> { "iperf3", "-c", serverAddress, "-p", port, "-t", ((int)duration.TotalSeconds).ToString(), "-J" };
        if (reverse) arguments.Add("-R");
        var json = client.Run(arguments.ToArray());
        using var report = JsonDocument.Parse(json);
        var bits = report.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
        return bits / 1e6;
    }
}
