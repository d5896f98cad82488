using Balancer.Configuration;
using Balancer.Model;

namespace Balancer.Routing;

public sealed partial class PoolRouter
{
    /// <summary>Set a backend's admin state on every node; answered with <see cref="Akka.Actor.Status.Success"/> or a failure naming the problem.</summary>
    public sealed record SetAdminState(string Backend, BackendAdminState State);

    /// <summary>Set a backend's weight (<see cref="Configuration.BackendRules"/>) on every node; answered like <see cref="SetAdminState"/>.</summary>
    public sealed record SetWeight(string Backend, int Weight);

    /// <summary>Add a backend at runtime on every node; answered like <see cref="SetAdminState"/>.</summary>
    public sealed record AddBackend(string Backend, string Address, int? Weight = null);

    /// <summary>Remove a backend at runtime on every node; answered like <see cref="SetAdminState"/>.</summary>
    public sealed record RemoveBackend(string Backend);

    /// <summary>The backends registered for the pool in etcd now (replacing those of the last message).</summary>
    internal sealed record SetRegistered(System.Collections.Immutable.ImmutableArray<BackendSettings> Backends);

    /// <summary>This node's configuration of the pool was reloaded; answered with <see cref="Akka.Done"/> once the new snapshot is live.</summary>
    internal sealed record Reconfigure(PoolSettings Settings);

    /// <summary>Asks for the current snapshot; answered with <see cref="PoolSnapshot"/>.</summary>
    public sealed class GetSnapshot
    {
        public static readonly GetSnapshot Instance = new();
        private GetSnapshot() { }
    }

    /// <summary>The periodic fold of passive health and slow start.</summary>
    private sealed class Tick
    {
        public static readonly Tick Instance = new();
        private Tick() { }
    }

    /// <summary>Who asked for a replicated change, answered once the write is confirmed.</summary>
    private sealed record PendingWrite(Akka.Actor.IActorRef ReplyTo, object Result, string What);
}
