using System.CommandLine;
using Weft.Cluster.Cli;

// The coordinator's host owns SIGTERM and SIGINT: it leaves the cluster gracefully (agents moved,
// shards and singletons handed over), which takes longer than the 2 s after which System.CommandLine
// would otherwise end the process.
return await WeftCommandLine.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
