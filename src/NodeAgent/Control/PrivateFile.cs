namespace Weft.NodeAgent.Control;

/// <summary>
/// Files that hold the agent's secrets (its keys, its netmap): created with mode 0600 and replaced
/// atomically, so that a crash mid-write leaves the old file whole and no other user ever reads one.
/// </summary>
public static class PrivateFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> into a temporary file (mode 0600), flushed to disk, then renamed over it.</summary>
    public static void Replace(string path, Action<Stream> write)
    {
        var temporary = path + ".tmp";
        File.Delete(temporary); // the mode applies only to a file we create
        using (var stream = new FileStream(temporary, new FileStreamOptions
               {
                   Mode = FileMode.CreateNew,
                   Access = FileAccess.Write,
                   UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
               }))
        {
            write(stream);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }
}
