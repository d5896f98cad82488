using Akka.Actor;

namespace Balancer.Replication;

/// <summary>
/// Whether this node's durable store writes: set by <see cref="LmdbDurableStore"/>, read by
/// <c>/readyz</c> without asking any actor.
/// </summary>
public sealed class DurableStoreHealth : IExtension
{
    private volatile Failing? _failure;

    /// <summary>Why writes began to fail and since when, or null while they succeed.</summary>
    public Failing? Failure => _failure;

    internal void Failed(string directory, string reason) => _failure = new Failing(directory, reason, DateTimeOffset.UtcNow);

    internal void Recovered() => _failure = null;

    public static DurableStoreHealth Get(ActorSystem system) => system.WithExtension<DurableStoreHealth, DurableStoreHealthProvider>();

    /// <summary>A failing store: its folder, the error that started the episode, and since when.</summary>
    public sealed record Failing(string Directory, string Reason, DateTimeOffset Since);
}

/// <summary>Creates the <see cref="DurableStoreHealth"/> of an ActorSystem.</summary>
public sealed class DurableStoreHealthProvider : ExtensionIdProvider<DurableStoreHealth>
{
    /// <inheritdoc />
    public override DurableStoreHealth CreateExtension(ExtendedActorSystem system) => new();
}
