// The harnesses drive the node agent, which runs on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
