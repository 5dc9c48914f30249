using Weft.Cluster.Cli;

return await WeftCommandLine.Build().Parse(args).InvokeAsync();
