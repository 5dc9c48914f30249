using System.CommandLine;
using Weft.Relay;

return await RelayCommandLine.Build().Parse(args).InvokeAsync();
