// The lab runs real node agents and signals processes: Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
