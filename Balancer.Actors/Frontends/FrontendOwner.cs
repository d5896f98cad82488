using Akka.Actor;
using Balancer.Routing;

namespace Balancer.Frontends;

/// <summary>
/// Opens this node's frontends on <see cref="Open"/> and closes them on <see cref="Close"/>, one
/// generation of frontend actors at a time: an Open that comes while the previous generation is
/// still closing its listeners takes effect once they are closed, so no port is bound twice.
/// </summary>
internal sealed class FrontendOwner : ReceiveActor
{
    private readonly BalancerSettings _settings;
    private readonly PoolRegistry _pools;
    private IActorRef? _frontends;
    private bool _closing;
    private bool _wanted;
    private int _generation;

    public FrontendOwner(BalancerSettings settings, PoolRegistry pools)
    {
        _settings = settings;
        _pools = pools;
        Receive<Open>(_ =>
        {
            _wanted = true;
            OpenIfClosed();
        });
        Receive<Close>(_ =>
        {
            _wanted = false;
            if (_frontends is not null && !_closing)
            {
                _closing = true;
                Context.Stop(_frontends);
            }
        });
        Receive<Terminated>(terminated =>
        {
            if (terminated.ActorRef.Equals(_frontends))
            {
                _frontends = null;
                _closing = false;
                OpenIfClosed();
            }
        });
    }

    public static Props Props(BalancerSettings settings, PoolRegistry pools) => Akka.Actor.Props.Create(() => new FrontendOwner(settings, pools));

    private void OpenIfClosed()
    {
        if (!_wanted || !_settings.Node.StartFrontends || _frontends is not null)
        {
            return;
        }
        // A previous generation may still be closing its listeners; names stay unique meanwhile.
        _frontends = Context.ActorOf(Akka.Actor.Props.Create(() => new BalancerGuardian.ChildrenSupervisor()), _generation++ == 0 ? "frontends" : $"frontends-{_generation}");
        Context.Watch(_frontends);
        foreach (var frontend in _settings.Frontends)
        {
            _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(frontend, _pools), frontend.Name));
        }
    }

    /// <summary>Open every configured frontend (once the previous generation is closed).</summary>
    public sealed class Open
    {
        public static readonly Open Instance = new();
        private Open() { }
    }

    /// <summary>Close every frontend.</summary>
    public sealed class Close
    {
        public static readonly Close Instance = new();
        private Close() { }
    }
}
