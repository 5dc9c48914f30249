using System.CommandLine;
using Weft.NodeAgent.Cli;

// On SIGTERM or Ctrl+C the agent takes its tunnels and interface down before it exits; give it time.
return await AgentCommandLine.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
