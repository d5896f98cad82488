using Akka.Actor;

namespace Balancer.Management;

/// <summary>
/// The node's actor tree, as <c>ctl actor hierarchy</c> shows it: every actor under
/// <c>/user</c> and <c>/system</c>, found by asking each level's children to identify themselves
/// (<c>Identify</c> through <c>path/*</c>), at most <see cref="MaxActors"/> and
/// <see cref="MaxDepth"/> levels deep, within <see cref="Timeout"/>.
/// </summary>
internal static class ActorHierarchy
{
    public const int MaxActors = 5000;
    public const int MaxDepth = 12;
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    /// <summary>The actor paths (without the address), sorted, and whether the walk stopped at a limit.</summary>
    public static Task<(IReadOnlyList<string> Paths, bool Truncated)> WalkAsync(ActorSystem system)
    {
        var done = new TaskCompletionSource<(IReadOnlyList<string>, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        system.ActorOf(Props.Create(() => new Walker(done)).WithDeploy(Deploy.Local), $"actor-hierarchy-{Guid.NewGuid():N}");
        return done.Task;
    }

    private sealed class Walker : ReceiveActor, IWithTimers
    {
        private readonly TaskCompletionSource<(IReadOnlyList<string>, bool)> _done;
        private readonly SortedSet<string> _paths = new(StringComparer.Ordinal);
        private bool _truncated;

        public Walker(TaskCompletionSource<(IReadOnlyList<string>, bool)> done)
        {
            _done = done;
            Receive<ActorIdentity>(identity =>
            {
                if (identity.Subject is not { } actor || actor.Equals(Self))
                {
                    return;
                }
                var path = string.Concat(actor.Path.Elements.Select(e => "/" + e));
                if (!_paths.Add(path))
                {
                    return;
                }
                if (_paths.Count >= MaxActors)
                {
                    _truncated = true;
                    Finish();
                    return;
                }
                if (actor.Path.Elements.Count >= MaxDepth)
                {
                    // Its children, if it has any, are not shown.
                    _truncated = true;
                    return;
                }
                Context.ActorSelection(actor.Path / "*").Tell(new Identify(null));
                // The walk ends once no answer came for a moment.
                Timers.StartSingleTimer("quiet", Quiet.Instance, TimeSpan.FromMilliseconds(300));
            });
            Receive<Quiet>(_ => Finish());
            Receive<Limit>(_ =>
            {
                _truncated = true;
                Finish();
            });
        }

        public ITimerScheduler Timers { get; set; } = null!;

        protected override void PreStart()
        {
            _paths.Add("/user");
            _paths.Add("/system");
            Context.ActorSelection("/user/*").Tell(new Identify(null));
            Context.ActorSelection("/system/*").Tell(new Identify(null));
            Timers.StartSingleTimer("quiet", Quiet.Instance, TimeSpan.FromMilliseconds(500));
            Timers.StartSingleTimer("limit", Limit.Instance, Timeout);
        }

        private void Finish()
        {
            _done.TrySetResult((_paths.ToList(), _truncated));
            Context.Stop(Self);
        }

        private sealed class Quiet
        {
            public static readonly Quiet Instance = new();
            private Quiet() { }
        }

        private sealed class Limit
        {
            public static readonly Limit Instance = new();
            private Limit() { }
        }
    }
}
