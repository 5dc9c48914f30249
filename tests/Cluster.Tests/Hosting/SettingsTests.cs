using Akka.Actor;
using Akka.Cluster.Sharding;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Weft.Cluster.Cli;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Hosting;

public class SettingsTests
{
    [Fact]
    public void Defaults_describe_a_single_node_on_embedded_sqlite_with_a_loopback_api()
    {
        var settings = WeftSettings.From(new ConfigurationBuilder().Build());

        Assert.Equal("http://127.0.0.1:8080", settings.Api.Listen);
        Assert.Equal(4053, settings.Cluster.Port);
        Assert.Empty(settings.Cluster.Seeds);
        Assert.Equal(StorageProvider.Sqlite, settings.Storage.Provider);
        Assert.Equal("./data", settings.Storage.DataDirectory);
    }

    [Fact]
    public void Later_configuration_sources_win_over_earlier_ones()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection([new("Weft:Cluster:Port", "5000"), new("Weft:Storage:DataDirectory", "/var/lib/weft")])
            .AddInMemoryCollection([new("Weft:Cluster:Port", "6000")])
            .Build();

        var settings = WeftSettings.From(configuration);

        Assert.Equal(6000, settings.Cluster.Port);
        Assert.Equal("/var/lib/weft", settings.Storage.DataDirectory);
    }

    [Fact]
    public void Command_line_flags_become_overrides_of_the_matching_settings()
    {
        var root = new System.CommandLine.RootCommand();
        var serve = new ServeOptions(root);
        var parse = root.Parse(["--akka-port", "7000", "--seed", "10.9.9.9:1,127.0.0.1:2", "--seed", "127.0.0.1:3",
            "--postgres", "Host=db;Username=weft", "--api-listen", "http://127.0.0.1:9090"]);
        Assert.Empty(parse.Errors);

        var settings = WeftSettings.From(new ConfigurationBuilder()
            .AddInMemoryCollection([new("Weft:Cluster:Port", "4053"), new("Weft:Cluster:Seeds:0", "old:1")])
            .AddInMemoryCollection(serve.ToSettings(parse))
            .Build());

        Assert.Equal(7000, settings.Cluster.Port);
        Assert.Equal(["10.9.9.9:1", "127.0.0.1:2", "127.0.0.1:3"], settings.Cluster.Seeds);
        Assert.Equal(StorageProvider.Postgres, settings.Storage.Provider);
        Assert.Equal("Host=db;Username=weft", settings.Storage.ConnectionString);
        Assert.Equal("http://127.0.0.1:9090", settings.Api.Listen);
    }

    [Theory]
    [InlineData("Weft:Control:SessionReattachSeconds", "0", "Weft:Control:SessionReattachSeconds must be more than 0")]
    [InlineData("Weft:Control:PresenceTimeoutSeconds", "20", "Weft:Control:PresenceTimeoutSeconds (20) must be longer than SessionReattachSeconds (20)")]
    [InlineData("Weft:Control:KeepAliveSeconds", "30", "Weft:Control:KeepAliveSeconds must be more than 0 and at most 10")]
    [InlineData("Weft:Control:KeepAliveSeconds", "-1", "Weft:Control:KeepAliveSeconds must be more than 0 and at most 10")]
    [InlineData("Weft:Control:HousekeepingSeconds", "NaN", "Weft:Control:HousekeepingSeconds must be more than 0")]
    [InlineData("Weft:Control:FanOutCoalesceMilliseconds", "-1", "Weft:Control:FanOutCoalesceMilliseconds must be from 0 to 10000, not -1")]
    [InlineData("Weft:Control:FanOutCoalesceMilliseconds", "60000", "Weft:Control:FanOutCoalesceMilliseconds must be from 0 to 10000, not 60000")]
    [InlineData("Weft:Control:ConnectsPerSecond", "-5", "Weft:Control:ConnectsPerSecond must be 0 (no limit) or more")]
    [InlineData("Weft:Control:Connections:MaxConnections", "0", "Weft:Control:Connections:MaxConnections must be at least 1")]
    [InlineData("Weft:Control:Connections:MaxConnectionsPerAddress", "30000", "Weft:Control:Connections:MaxConnectionsPerAddress must be between 1 and MaxConnections (20000)")]
    [InlineData("Weft:Api:Connections:MaxConnectionsPerAddress", "0", "Weft:Api:Connections:MaxConnectionsPerAddress must be between 1 and MaxConnections (1000)")]
    [InlineData("Weft:Control:MaxPendingHandshakes", "0", "Weft:Control:MaxPendingHandshakes must be at least 1")]
    [InlineData("Weft:Control:PublicUrls:0", "node-a:7650", "Weft:Control:PublicUrls has 'node-a:7650', which is not an absolute http or https URL")]
    [InlineData("Weft:Cluster:Port", "70000", "Weft:Cluster:Port must be a port number")]
    [InlineData("Weft:Persistence:MaxCommandsPerWrite", "0", "Weft:Persistence:MaxCommandsPerWrite must be at least 1")]
    public void A_setting_out_of_its_range_stops_the_start_naming_the_setting(string key, string value, string message)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(key, value)]).Build();

        var error = Assert.Throws<InvalidOperationException>(() => WeftSettings.From(configuration));

        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Kubernetes_discovery_settings_are_checked_only_when_it_is_chosen()
    {
        KeyValuePair<string, string?>[] kubernetes = [new("Weft:Cluster:Kubernetes:RequiredContactPoints", "0"), new("Weft:Cluster:Kubernetes:ManagementPort", "0")];
        WeftSettings.From(new ConfigurationBuilder().AddInMemoryCollection(kubernetes).Build());

        var error = Assert.Throws<InvalidOperationException>(() => WeftSettings.From(new ConfigurationBuilder()
            .AddInMemoryCollection(kubernetes).AddInMemoryCollection([new("Weft:Cluster:Discovery", "Kubernetes")]).Build()));

        Assert.Contains("Weft:Cluster:Kubernetes:RequiredContactPoints must be at least 1", error.Message);
        Assert.Contains("Weft:Cluster:Kubernetes:ManagementPort must be a port number", error.Message);
    }

    [Theory]
    [InlineData("127.0.0.1:4053", "akka.ssl.tcp://weft@127.0.0.1:4053")]
    [InlineData("akka.ssl.tcp://weft@node-a:4053", "akka.ssl.tcp://weft@node-a:4053")]
    [InlineData("akka.tcp://weft@node-a:4053", "akka.ssl.tcp://weft@node-a:4053")] // the cluster runs over TLS only
    public void Seeds_may_be_given_as_host_and_port_or_as_addresses(string seed, string address)
    {
        Assert.Equal(address, ClusterNodeSettings.ToSeedAddress(seed));
    }

    [Fact]
    public async Task The_running_node_takes_its_sharding_and_downing_tuning_from_akka_hocon()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage);
        var system = node.Services.GetRequiredService<ActorSystem>();

        var sharding = ClusterShardingSettings.Create(system);
        Assert.Equal(StateStoreMode.DData, sharding.StateStoreMode);
        Assert.False(sharding.RememberEntities);
        Assert.Equal(TimeSpan.FromMinutes(10), sharding.PassivateIdleEntityAfter);
        var config = system.Settings.Config;
        Assert.Equal("keep-majority", config.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        Assert.Equal(1, config.GetInt("akka.persistence.journal.sql.parallelism"));
        Assert.Equal(TimeSpan.FromSeconds(30), config.GetTimeSpan("akka.persistence.journal.sql.circuit-breaker.call-timeout"));
        Assert.Equal(TimeSpan.FromSeconds(30), config.GetTimeSpan("akka.persistence.snapshot-store.sql.circuit-breaker.call-timeout"));
        Assert.Equal(200_000, config.GetInt("akka.remote.system-message-buffer-size"));
        Assert.Equal(100, config.GetInt("weft.sharding.number-of-shards"));
    }
}
