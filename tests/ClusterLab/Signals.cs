using System.Runtime.InteropServices;

namespace Weft.ClusterLab;

/// <summary>POSIX signals to a process: what <c>kill -9</c>, <c>kill -TERM</c>, <c>kill -STOP</c> and <c>kill -CONT</c> send.</summary>
public static partial class Signals
{
    public const int Kill = 9;
    public const int Terminate = 15;
    public const int Continue = 18;
    public const int Stop = 19;

    public static void Send(int pid, int signal)
    {
        if (SendSignal(pid, signal) != 0) throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
