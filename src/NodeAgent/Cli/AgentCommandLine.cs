using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Extensions.Logging;
using Weft.NodeAgent.Standalone;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Cli;

/// <summary>The <c>weft-agent</c> command line.</summary>
public static class AgentCommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand("Weft node agent: `weft-agent daemon` is the service; the other commands talk to it");
        root.Add(ControlCommands.Daemon());
        root.Add(ControlCommands.Up());
        root.Add(ControlCommands.Login());
        root.Add(ControlCommands.Set());
        root.Add(ControlCommands.Down());
        root.Add(ControlCommands.Status());
        root.Add(ControlCommands.Ping());
        root.Add(ControlCommands.Netcheck());
        root.Add(ControlCommands.Dns());
        root.Add(ControlCommands.Logout());
        root.Add(ControlCommands.RotateNodeKey());
        root.Add(WgCommands());
        return root;
    }

    private static Command WgCommands()
    {
        var wg = new Command("wg", "Standalone WireGuard: our engine from a wg-quick-style file, no coordinator");
        var up = new Command("up", "Bring up an interface and run until interrupted (SIGINT/SIGTERM)");
        var iface = new Argument<string>("interface") { Description = "Interface name, e.g. wg0 (1-15 characters)" };
        var config = new Option<FileInfo>("--config") { Description = "wg-quick-style file ([Interface] and [Peer] sections)", Required = true };
        var rekeyAfter = new Option<int?>("--rekey-after-seconds") { Description = "Testing: rekey sessions after this many seconds instead of 120" };
        up.Add(iface);
        up.Add(config);
        up.Add(rekeyAfter);
        up.SetAction(async (parse, cancel) =>
        {
            using var logger = new LoggerConfiguration().WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}").CreateLogger();
            using var factory = new SerilogLoggerFactory(logger);
            var log = factory.CreateLogger("weft-agent");
            var name = parse.GetValue(iface)!;
            WgQuickConfig parsed;
            try
            {
                parsed = WgQuickConfig.Load(parse.GetValue(config)!.FullName);
            }
            catch (Exception e) when (e is ConfigException or IOException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            var timings = WireGuardTimings.Default;
            if (parse.GetValue(rekeyAfter) is { } seconds)
                timings = timings with { RekeyAfterTime = TimeSpan.FromSeconds(seconds), RejectAfterTime = TimeSpan.FromSeconds(Math.Max(seconds + 60, 180)) };

            StandaloneTunnel tunnel;
            try
            {
                tunnel = await StandaloneTunnel.StartAsync(name, parsed, timings, log);
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
            await using (tunnel)
            {
                Console.WriteLine($"weft-agent: {name} is up, listening on UDP {tunnel.Device.ListenPort}, public key {parsed.PrivateKey.PublicKey}");
                var stopped = new TaskCompletionSource();
                using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stopped.TrySetResult(); });
                await using var _ = cancel.Register(() => stopped.TrySetResult());
                // As wireguard-go does, the tunnel ends with its interface.
                if (await Task.WhenAny(stopped.Task, tunnel.Device.InterfaceGone) == tunnel.Device.InterfaceGone)
                {
                    Console.Error.WriteLine($"error: {tunnel.Device.InterfaceGone.Result}; {name} is down");
                    return 1;
                }
                Console.WriteLine($"weft-agent: {name} going down");
            }
            return 0;
        });
        wg.Add(up);
        return wg;
    }
}
