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
    private BalancerSettings _settings;
    private readonly PoolRegistry _pools;
    /// <summary>How long requests in flight may finish when the frontends close on <see cref="Close"/> (the active duty given up).</summary>
    internal static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(5);

    private IActorRef? _frontends;
    private bool _closing;
    private bool _wanted;
    private bool _drained;
    private int _generation;

    public FrontendOwner(BalancerSettings settings, PoolRegistry pools)
    {
        _settings = settings;
        _pools = pools;
        Receive<Open>(_ =>
        {
            // After a drain (the node is stopping) nothing opens again.
            _wanted = !_drained;
            OpenIfClosed();
        });
        Receive<Drain>(drain =>
        {
            _wanted = false;
            _drained = true;
            // Nothing open (or nothing configured: an embedded client-only balancer): drained at once.
            if (_frontends is null || _closing || _settings.Frontends.Length == 0)
            {
                Sender.Tell(Drained.Instance);
                return;
            }
            var replyTo = Sender;
            var count = _settings.Frontends.Length;
            var collector = Context.ActorOf(Akka.Actor.Props.Create(() => new DrainCollector(count, replyTo, drain.Timeout + TimeSpan.FromSeconds(2))));
            _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Broadcast(drain), collector);
        });
        Receive<Close>(_ =>
        {
            _wanted = false;
            if (_frontends is null || _closing)
            {
                return;
            }
            _closing = true;
            // Each frontend stops accepting and lets what is in flight finish, off the actor
            // threads; the generation stops once every one has (or its time is up).
            var collector = Context.ActorOf(Akka.Actor.Props.Create(() => new DrainCollector(_settings.Frontends.Length, Self, CloseGrace + TimeSpan.FromSeconds(2))));
            _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Broadcast(new Drain(CloseGrace)), collector);
        });
        Receive<Reconfigure>(reconfigure =>
        {
            _settings = reconfigure.Settings;
            // Closed (a standby, or not open yet): the next Open opens the new set as it is.
            if (_frontends is not null && !_closing)
            {
                var change = reconfigure.Change;
                foreach (var name in change.FrontendsRemoved)
                {
                    _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Retire(name, new Drain(_settings.Node.DrainTimeout), null));
                }
                foreach (var changed in change.FrontendsChanged)
                {
                    _frontends.Tell(changed.InPlace
                        ? new BalancerGuardian.ChildrenSupervisor.ForwardTo(changed.Settings.Name, new FrontendActor.Reconfigure(changed.Settings))
                        // Its listeners change: the old ones let what is in flight finish, then the new ones open.
                        : new BalancerGuardian.ChildrenSupervisor.Retire(changed.Settings.Name, new Drain(_settings.Node.DrainTimeout),
                            new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(changed.Settings, _pools), changed.Settings.Name)));
                }
                foreach (var added in change.FrontendsAdded)
                {
                    _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(added, _pools), added.Name));
                }
            }
            Sender.Tell(Akka.Done.Instance);
        });
        Receive<Drained>(_ =>
        {
            // The frontends a Close drained: now the generation may go.
            if (_closing && _frontends is not null)
            {
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

    /// <summary>
    /// Stop accepting on every frontend at once and let the requests and connections in flight
    /// finish within <paramref name="Timeout"/> (the node is stopping: SIGTERM, leave); answered with
    /// <see cref="Drained"/>. Nothing opens again afterwards.
    /// </summary>
    public sealed record Drain(TimeSpan Timeout);

    /// <summary>A reload: frontends added, removed, opened again or changed in place as <paramref name="Change"/> says; answered with <see cref="Akka.Done"/>.</summary>
    public sealed record Reconfigure(BalancerSettings Settings, Configuration.ConfigurationChange Change);

    /// <summary>Every frontend is closed.</summary>
    public sealed class Drained
    {
        public static readonly Drained Instance = new();
        private Drained() { }
    }

    /// <summary>Answers <see cref="Drained"/> once every frontend has, or when its time is up.</summary>
    private sealed class DrainCollector : ReceiveActor
    {
        public DrainCollector(int expected, IActorRef replyTo, TimeSpan timeout)
        {
            var drained = 0;
            Context.SetReceiveTimeout(timeout);
            Receive<Drained>(_ =>
            {
                if (++drained >= expected)
                {
                    Finish();
                }
            });
            Receive<ReceiveTimeout>(_ => Finish());
            void Finish()
            {
                replyTo.Tell(Drained.Instance);
                Context.Stop(Self);
            }
        }
    }

    /// <summary>Close every frontend.</summary>
    public sealed class Close
    {
        public static readonly Close Instance = new();
        private Close() { }
    }
}
