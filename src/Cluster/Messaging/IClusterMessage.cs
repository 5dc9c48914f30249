namespace Weft.Cluster.Messaging;

/// <summary>
/// Marks a message that may cross from one coordinator node to another (through sharding or an ask).
/// Each one carries a <see cref="WireNameAttribute"/>; <see cref="ClusterMessageSerializer"/> uses
/// that name, never the CLR type name, so nodes of different builds still understand each other.
/// </summary>
public interface IClusterMessage;

/// <summary>The stable name a cluster message travels under.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class WireNameAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}
