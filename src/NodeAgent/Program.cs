using Weft.NodeAgent.Cli;

return await AgentCommandLine.Build().Parse(args).InvokeAsync();
