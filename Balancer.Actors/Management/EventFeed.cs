using System.Collections.Concurrent;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster;

namespace Balancer.Management;

/// <summary>
/// The node's stream of <see cref="NotableEvent"/>s for the admin API (<c>GET /api/events</c>, which
/// <c>ctl cluster tail</c> and the status page read): the latest events for a late reader, and a
/// bounded channel per reader so that a slow one loses its oldest events instead of holding memory.
/// </summary>
public sealed class EventFeed
{
    private const int Kept = 200;
    private readonly ConcurrentQueue<NotableEvent> _recent = new();
    private readonly ConcurrentDictionary<Channel<NotableEvent>, bool> _readers = new();

    /// <summary>The latest events, oldest first.</summary>
    public IReadOnlyList<NotableEvent> Recent => _recent.ToArray();

    /// <summary>A reader of every event from now on; dispose it to stop.</summary>
    public Reader Subscribe()
    {
        var channel = Channel.CreateBounded<NotableEvent>(new BoundedChannelOptions(1000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        _readers[channel] = true;
        return new Reader(channel, () => _readers.TryRemove(channel, out _));
    }

    internal void Add(NotableEvent notable)
    {
        _recent.Enqueue(notable);
        while (_recent.Count > Kept && _recent.TryDequeue(out _))
        {
        }
        foreach (var reader in _readers.Keys)
        {
            reader.Writer.TryWrite(notable);
        }
    }

    /// <summary>One subscriber's events.</summary>
    public sealed class Reader(Channel<NotableEvent> channel, Action unsubscribe) : IDisposable
    {
        /// <summary>The events, in order.</summary>
        public ChannelReader<NotableEvent> Events => channel.Reader;

        /// <inheritdoc />
        public void Dispose()
        {
            unsubscribe();
            channel.Writer.TryComplete();
        }
    }
}

/// <summary>
/// Turns balancer and cluster events into <see cref="NotableEvent"/>s: into the <see cref="EventFeed"/>,
/// the log, and back onto the EventStream for the alert notifier and embedders.
/// </summary>
internal sealed class EventFeedActor : ReceiveActor
{
    private readonly Cluster _cluster = Cluster.Get(Context.System);

    public EventFeedActor(EventFeed feed)
    {
        var node = _cluster.SelfAddress.ToString();
        ReceiveAny(message =>
        {
            if (NotableEvent.From(message, node, Context.System.Scheduler.Now) is { } notable)
            {
                feed.Add(notable);
                Context.System.EventStream.Publish(notable);
            }
        });
    }

    public static Props Props(EventFeed feed) => Akka.Actor.Props.Create(() => new EventFeedActor(feed));

    protected override void PreStart()
    {
        foreach (var type in NotableEvent.SourceTypes)
        {
            Context.System.EventStream.Subscribe(Self, type);
        }
        // Current members arrive as events too, so a reader sees who is up from the start.
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent), typeof(ClusterEvent.LeaderChanged));
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        _cluster.Unsubscribe(Self);
    }
}
