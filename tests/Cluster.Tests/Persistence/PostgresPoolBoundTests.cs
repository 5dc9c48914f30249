using Npgsql;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tests.Persistence;

/// <summary>
/// Each node bounds its PostgreSQL pool unless the operator did: three nodes with Npgsql's default of
/// 100 would ask more of a server with the default max_connections (100) than it allows.
/// </summary>
public class PostgresPoolBoundTests
{
    [Fact]
    public void A_connection_string_without_a_pool_size_gets_the_default_bound()
    {
        var bounded = new NpgsqlConnectionStringBuilder(PersistenceSetup.BoundPostgresPool("Host=127.0.0.1;Port=5439;Username=postgres;Database=weft"));
        Assert.Equal(PersistenceSetup.DefaultPostgresPoolSize, bounded.MaxPoolSize);
        Assert.Equal("127.0.0.1", bounded.Host);
        Assert.Equal(5439, bounded.Port);
        Assert.Equal("weft", bounded.Database);
    }

    [Theory]
    [InlineData("Host=db;Database=weft;Maximum Pool Size=100", 100)]
    [InlineData("Host=db;Database=weft;Maximum Pool Size=7", 7)]
    [InlineData("Host=db;Database=weft;maxpoolsize=60", 60)]
    public void A_pool_size_the_operator_set_is_kept_under_any_of_its_spellings_Npgsql_takes(string connectionString, int expected)
    {
        Assert.Equal(connectionString, PersistenceSetup.BoundPostgresPool(connectionString));
        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(PersistenceSetup.BoundPostgresPool(connectionString)).MaxPoolSize);
    }

    [Fact]
    public void The_resolved_postgres_connection_string_is_bounded()
    {
        var (connectionString, _) = PersistenceSetup.Resolve(new StorageSettings { Provider = StorageProvider.Postgres, ConnectionString = "Host=db;Database=weft" });
        Assert.Equal(PersistenceSetup.DefaultPostgresPoolSize, new NpgsqlConnectionStringBuilder(connectionString).MaxPoolSize);
    }
}
