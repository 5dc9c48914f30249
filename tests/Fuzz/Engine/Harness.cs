namespace Weft.Fuzz.Engine;

/// <summary>
/// One parser under fuzz. <see cref="Run"/> feeds it one input and names what happened (accepted,
/// or refused with which error): a refusal the parser documents is a normal outcome, and the name
/// is the feedback that steers the fuzzer towards inputs that behave differently. Any exception that
/// escapes <see cref="Run"/> is a crash.
/// </summary>
public abstract class Harness
{
    public abstract string Name { get; }

    /// <summary>Valid (and a few borderline) inputs the mutations start from.</summary>
    public abstract IEnumerable<byte[]> Seeds();

    /// <summary>Fragments worth splicing in: keywords, delimiters, magic numbers.</summary>
    public virtual IReadOnlyList<byte[]> Tokens => [];

    /// <summary>The largest input the mutator builds; parsers must refuse larger ones themselves where it matters.</summary>
    public virtual int MaxInputBytes => 64 * 1024;

    /// <summary>Runs one input; returns a short label of the outcome (digits are stripped by the engine).</summary>
    public abstract string Run(byte[] input);

    protected static byte[] Utf8(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    protected static IReadOnlyList<byte[]> Words(params string[] words) => words.Select(Utf8).ToArray();

    /// <summary>Decodes as UTF-8 the way a server would (invalid bytes become U+FFFD).</summary>
    protected static string Text(byte[] input) => System.Text.Encoding.UTF8.GetString(input);

    /// <summary>The label for a documented refusal: its type and the message with numbers removed.</summary>
    protected static string Refused(Exception e) => "refused:" + e.GetType().Name + ":" + Shorten(e.Message);

    protected static string Shorten(string message) => message.Length <= 60 ? message : message[..60];
}
