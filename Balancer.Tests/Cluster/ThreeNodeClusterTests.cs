using System.Net;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.DistributedData;
using Balancer.Configuration;
using Balancer.Replication;
using Balancer.Model;
using Balancer.Routing;
using Balancer.Tests.TestSupport;

namespace Balancer.Tests.Cluster;

/// <summary>Three ActorSystems on loopback port 0 forming one real cluster, in front of real Kestrel backends.</summary>
public sealed class ThreeNodeCluster : IAsyncLifetime
{
    internal BackendSet Backends { get; private set; } = null!;

    public List<ActorSystem> Nodes { get; } = new();

    public async Task InitializeAsync()
    {
        Backends = await BackendSet.StartAsync("a", "b", "c");
        var balancer = $$"""
            balancer.node.start-frontends = off
            balancer.pools.app {
              health-check { interval = 200ms, fast-interval = 100ms, down-interval = 200ms, timeout = 150ms, rise = 1, fall = 1 }
              passive.consecutive-failures = 0
              slow-start = 0s
              {{Backends.Hocon()}}
            }
            akka.cluster.failure-detector.acceptable-heartbeat-pause = 2s
            balancer.replication.gossip-interval = 500ms
            """;
        Nodes.AddRange(await InProcessCluster.StartAsync("balancer-cluster", ConfigurationFactory.ParseString(balancer)));
    }

    public PoolSnapshot Snapshot(int node) => BalancerExtension.Get(Nodes[node]).Pools.Find("app")!.Snapshot;

    public Task<Status> AskRouter(int node, object message) =>
        BalancerExtension.Get(Nodes[node]).PoolRouter("app").Ask<Status>(message, TimeSpan.FromSeconds(10));

    public async Task DisposeAsync()
    {
        await Task.WhenAll(Nodes.Select(n => n.Terminate().WaitAsync(TimeSpan.FromSeconds(20))));
        await Backends.DisposeAsync();
    }
}

[Collection(SerialCollection.Name)]
public class ThreeNodeClusterTests : IClassFixture<ThreeNodeCluster>
{
    private readonly ThreeNodeCluster _cluster;

    public ThreeNodeClusterTests(ThreeNodeCluster cluster) => _cluster = cluster;

    [Fact]
    public async Task DrainAndWeightOnOneNode_ReachEveryNodesSnapshot()
    {
        Assert.IsType<Status.Success>(await _cluster.AskRouter(0, new PoolRouter.SetAdminState("a", BackendAdminState.Drain)));
        Assert.IsType<Status.Success>(await _cluster.AskRouter(0, new PoolRouter.SetWeight("c", 250)));
        await Eventually.Holds(() =>
        {
            for (var node = 0; node < 3; node++)
            {
                var snapshot = _cluster.Snapshot(node);
                Assert.Equal(BackendAdminState.Drain, snapshot.Backends.Single(b => b.Name == "a").AdminState);
                Assert.DoesNotContain(snapshot.Routable, b => b.Name == "a");
                Assert.Equal(250, snapshot.Backends.Single(b => b.Name == "c").Weight);
            }
        });
        Assert.IsType<Status.Success>(await _cluster.AskRouter(2, new PoolRouter.SetAdminState("a", BackendAdminState.Ready)));
        await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.Contains(_cluster.Snapshot(n).Routable, b => b.Name == "a")));
    }

    [Fact]
    public async Task ProbeVerdict_ReachesEveryNode()
    {
        using var http = new HttpClient();
        await http.PostAsync($"http://127.0.0.1:{_cluster.Backends["b"].Port}/control/health?ok=false", null);
        try
        {
            await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.False(_cluster.Snapshot(n).Backends.Single(b => b.Name == "b").Healthy)));
        }
        finally
        {
            await http.PostAsync($"http://127.0.0.1:{_cluster.Backends["b"].Port}/control/health?ok=true", null);
        }
        await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.True(_cluster.Snapshot(n).Backends.Single(b => b.Name == "b").Healthy)));
    }

    [Fact]
    public async Task BackendAddedOnOneNode_RoutableFromAnother_AndRemovable()
    {
        await using var extra = await BackendSet.StartAsync("d");
        var added = await _cluster.AskRouter(1, new PoolRouter.AddBackend("d", $"127.0.0.1:{extra["d"].Port}", 100));
        Assert.True(added is Status.Success, (added as Status.Failure)?.Cause.ToString());
        await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.Contains(_cluster.Snapshot(n).Routable, b => b.Name == "d")));
        var snapshot = _cluster.Snapshot(0);
        var request = new RoutingRequest(IPAddress.Loopback);
        var seen = new HashSet<string>();
        for (var i = 0; i < 8; i++)
        {
            var attempted = new AttemptedBackends();
            seen.Add(snapshot.Select(in request, ref attempted)!.Name);
        }
        Assert.Contains("d", seen);

        var duplicate = await _cluster.AskRouter(2, new PoolRouter.AddBackend("a", "127.0.0.1:1"));
        Assert.Equal("pool app already has a backend \"a\"", Assert.IsType<Status.Failure>(duplicate).Cause.Message);
        var bad = await _cluster.AskRouter(2, new PoolRouter.AddBackend("e", "nowhere"));
        Assert.Equal("address: expected HOST:PORT, got \"nowhere\"", Assert.IsType<Status.Failure>(bad).Cause.Message);

        Assert.IsType<Status.Success>(await _cluster.AskRouter(2, new PoolRouter.RemoveBackend("d")));
        await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.DoesNotContain(_cluster.Snapshot(n).Backends, b => b.Name == "d")));
    }

    [Fact]
    public async Task WhatAMemberRuns_RemovedByTheLeaderAfterItCameBack_IsSaidAgain()
    {
        // The leader removes what a member that left ran; when the member came back at the same
        // address, that removal can arrive after the new incarnation's entry and take it too.
        var memberNode = _cluster.Nodes[2];
        var member = Akka.Cluster.Cluster.Get(memberNode).SelfAddress.ToString();
        await Eventually.Holds(() => Assert.All(Enumerable.Range(0, 3), n => Assert.Contains(member, BalancerExtension.Get(_cluster.Nodes[n]).ConfigurationStatus.Current.Running.Keys)));
        var seenByTheMember = new System.Collections.Concurrent.ConcurrentQueue<bool>();
        var watcher = memberNode.ActorOf(Props.Create(() => new EntryWatcher(member, seenByTheMember)));
        var leader = _cluster.Nodes[0];
        var removed = await BalancerReplicator.Get(leader).Replicator.Ask(Dsl.Update(
            ReplicatedKeys.RunningConfigurations, LWWDictionary<string, RunningConfiguration>.Empty, WriteLocal.Instance,
            map => map.Remove(Akka.Cluster.Cluster.Get(leader).SelfUniqueAddress, member)), TimeSpan.FromSeconds(5));
        Assert.IsType<UpdateSuccess>(removed);

        // The member sees its entry gone, says it again, and every node has it back.
        await Eventually.Holds(() => Assert.Contains(false, seenByTheMember));
        await Eventually.Holds(() =>
        {
            Assert.True(seenByTheMember.SkipWhile(present => present).Contains(true), "the member never said again what it runs");
            Assert.All(Enumerable.Range(0, 3), n => Assert.Contains(member, BalancerExtension.Get(_cluster.Nodes[n]).ConfigurationStatus.Current.Running.Keys));
        });
        await watcher.GracefulStop(TimeSpan.FromSeconds(5));
    }

    /// <summary>Whether each replica of what members run that a node sees holds <c>member</c>'s entry.</summary>
    private sealed class EntryWatcher : ReceiveActor
    {
        public EntryWatcher(string member, System.Collections.Concurrent.ConcurrentQueue<bool> seen) =>
            Receive<Changed>(changed => seen.Enqueue(changed.Get(ReplicatedKeys.RunningConfigurations).ContainsKey(member)));

        protected override void PreStart() =>
            BalancerReplicator.Get(Context.System).Replicator.Tell(Dsl.Subscribe(ReplicatedKeys.RunningConfigurations, Self));
    }

    [Fact]
    public void Membership_ListsEveryMemberUpAndReachable()
    {
        var facts = BalancerExtension.Get(_cluster.Nodes[1]).Membership.Current();
        Assert.Equal(3, facts.Members.Length);
        Assert.All(facts.Members, m => Assert.Equal(("up", true, Balancer.Membership.NodeDuty.Active), (m.Status, m.Reachable, m.Duty)));
        Assert.Empty(facts.Unreachable);
        Assert.Contains(facts.Leader, facts.Members.Select(m => m.Address));
        Assert.Equal(Akka.Cluster.Cluster.Get(_cluster.Nodes[1]).SelfAddress.ToString(), facts.Self);
    }
}
