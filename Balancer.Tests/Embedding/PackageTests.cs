using System.Diagnostics;
using Balancer.Tests.Node;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Embedding;

/// <summary>
/// Balancer as an app gets it: <c>dotnet pack</c> of Balancer.Actors into a folder feed, and a
/// fresh console app outside the repository that references the package (not the project),
/// restores it from that feed, and runs a balancer with a durable store (the packaged LMDB).
/// </summary>
[Collection(SerialCollection.Name)]
public class PackageTests
{
    [Fact]
    public async Task Pack_ThenAnAppRestoresThePackageFromAFolderFeed_AndRuns()
    {
        var root = CommandLineTests.RepositoryRoot();
        var work = Directory.CreateTempSubdirectory("balancer-package-").FullName;
        // A version of its own, so that no earlier package in the NuGet cache stands in for this one.
        var version = $"0.1.0-test{DateTime.UtcNow:yyyyMMddHHmmss}{Environment.ProcessId}";
        var cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "balancer.actors", version);
        try
        {
            var feed = Directory.CreateDirectory(Path.Combine(work, "feed")).FullName;
            var (packed, packOutput) = await ToolProcess.RunAsync("dotnet", ["pack", "Balancer.Actors", "-c", "Release", "--no-build", "-o", feed, $"-p:Version={version}"], root, TimeSpan.FromMinutes(3));
            Assert.True(packed == 0, packOutput);
            var package = Path.Combine(feed, $"Balancer.Actors.{version}.nupkg");
            using (var zip = System.IO.Compression.ZipFile.OpenRead(package))
            {
                var entries = zip.Entries.Select(e => e.FullName).ToList();
                Assert.Contains("PACKAGE.md", entries);
                Assert.Contains("runtimes/linux-x64/native/liblmdb.so", entries);
                Assert.Contains("lib/net10.0/Balancer.Actors.dll", entries);
            }

            var app = Directory.CreateDirectory(Path.Combine(work, "app")).FullName;
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
                  </packageSources>
                </configuration>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <NoWarn>NU1603;NU1608</NoWarn>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Balancer.Actors" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            var durable = Path.Combine(work, "durable");
            File.WriteAllText(Path.Combine(app, "Program.cs"), $$""""
                using Akka.Actor;
                using Akka.Configuration;
                using Balancer;
                using Balancer.Routing;

                var config = ConfigurationFactory.ParseString("""
                    akka.actor.provider = cluster
                    akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
                    akka.loglevel = WARNING
                    balancer.replication.durable.lmdb.dir = "{{durable}}"
                    balancer.pools.inventory {
                      health-check.kind = none
                      backends { a = "127.0.0.1:9", b = "127.0.0.1:10" }
                    }
                    """);
                var system = ActorSystem.Create("app", config);
                Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress);
                var balancer = BalancerExtension.Get(system);
                await balancer.Started.WaitAsync(TimeSpan.FromSeconds(30));
                var picked = Enumerable.Range(0, 4).Select(_ => { var lease = balancer.Client.Select("inventory"); lease.Complete(BackendOutcome.Success, 200); return lease.Backend!.Name; });
                Console.WriteLine("picked " + string.Join(",", picked));
                var drained = await balancer.PoolRouter("inventory").Ask<Status>(new PoolRouter.SetAdminState("b", Balancer.Model.BackendAdminState.Drain), TimeSpan.FromSeconds(10));
                Console.WriteLine("drain " + (drained is Status.Success ? "ok" : drained.ToString()));
                await system.Terminate();
                """");
            var (ran, runOutput) = await ToolProcess.RunAsync("dotnet", ["run", "-c", "Release"], app, TimeSpan.FromMinutes(5));
            Assert.True(ran == 0, runOutput);
            Assert.Matches("picked (a,b,a,b|b,a,b,a)", runOutput);
            Assert.Contains("drain ok", runOutput);
            Assert.True(File.Exists(Path.Combine(durable, "data.mdb")), "the durable store (the packaged LMDB) wrote its file:\n" + runOutput);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
            if (Directory.Exists(cached))
            {
                Directory.Delete(cached, recursive: true);
            }
        }
    }
}
