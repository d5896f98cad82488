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
            var collector = Context.ActorOf(Akka.Actor.Props.Create(() => new DrainCollector(replyTo, drain.Timeout + TimeSpan.FromSeconds(2))));
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
            var collector = Context.ActorOf(Akka.Actor.Props.Create(() => new DrainCollector(Self, CloseGrace + TimeSpan.FromSeconds(2))));
            _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Broadcast(new Drain(CloseGrace)), collector);
        });
        Receive<Reconfigure>(reconfigure =>
        {
            _settings = reconfigure.Settings;
            var inPlace = new List<Task>();
            // Closed (a standby, or not open yet): the next Open opens the new set as it is;
            // stopping (drained): nothing opens again.
            if (_frontends is not null && !_closing && !_drained)
            {
                var change = reconfigure.Change;
                var added = change.FrontendsAdded.ToList();
                foreach (var name in change.FrontendsRemoved)
                {
                    // A frontend added on an address a removed one holds (a rename) opens once that one stops listening.
                    var removed = reconfigure.Running.Frontends.FirstOrDefault(f => f.Name == name);
                    var heir = removed is null ? null : added.FirstOrDefault(a => a.Bind.Intersect(removed.Bind).Any());
                    if (heir is not null)
                    {
                        added.Remove(heir);
                    }
                    _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Retire(name, new Drain(_settings.Node.DrainTimeout),
                        heir is null ? null : new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(heir, _pools), heir.Name)));
                }
                foreach (var changed in change.FrontendsChanged)
                {
                    if (changed.InPlace)
                    {
                        // Answered once the frontend routes by the new settings, so a reload is done when it says so.
                        inPlace.Add(_frontends.Ask<Akka.Done>(new BalancerGuardian.ChildrenSupervisor.ForwardTo(changed.Settings.Name, new FrontendActor.Reconfigure(changed.Settings)), TimeSpan.FromSeconds(5)));
                        continue;
                    }
                    // Its listeners change: the new ones open as soon as the old ones stop listening
                    // (at once when both share their addresses by SO_REUSEPORT), while what is in
                    // flight on the old ones finishes.
                    var before = reconfigure.Running.Frontends.FirstOrDefault(f => f.Name == changed.Settings.Name);
                    var overlap = before is { ReusePort: true } && changed.Settings.ReusePort && before.Bind.SequenceEqual(changed.Settings.Bind);
                    _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.Retire(changed.Settings.Name, new Drain(_settings.Node.DrainTimeout),
                        new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(changed.Settings, _pools), changed.Settings.Name), overlap));
                }
                foreach (var frontend in added)
                {
                    _frontends.Tell(new BalancerGuardian.ChildrenSupervisor.StartChild(FrontendActor.Props(frontend, _pools), frontend.Name));
                }
            }
            Task.WhenAll(inPlace).ContinueWith(_ => Akka.Done.Instance, TaskScheduler.Default).PipeTo(Sender);
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
        BalancerExtension.Get(Context.System).DataPlane.DrainRemoved(_settings.Node.DrainTimeout);
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
    public sealed record Reconfigure(BalancerSettings Running, BalancerSettings Settings, Configuration.ConfigurationChange Change);

    /// <summary>Every frontend is closed.</summary>
    public sealed class Drained
    {
        public static readonly Drained Instance = new();
        private Drained() { }
    }

    /// <summary>Answers <see cref="Drained"/> once every frontend has, or when its time is up.</summary>
    private sealed class DrainCollector : ReceiveActor
    {
        public DrainCollector(IActorRef replyTo, TimeSpan timeout)
        {
            // As many as the broadcast reached (retiring frontends included), which it says first.
            var expected = int.MaxValue;
            var drained = 0;
            Context.SetReceiveTimeout(timeout);
            Receive<BalancerGuardian.BroadcastTo>(to =>
            {
                expected = to.Children;
                if (drained >= expected)
                {
                    Finish();
                }
            });
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
