using System.Diagnostics;

namespace Balancer.Node.Demo;

/// <summary>
/// The demo's chaos: a steady load of sticky sessions over the shared port while, every interval,
/// one node (never more, so a majority always stays) is killed with SIGKILL and started again
/// after a pause. It prints a rolling line and, at the end, totals: requests that failed are split
/// into those in flight when a node was killed and any other (which should never happen), and
/// every session is checked against the backend it started on.
/// </summary>
internal sealed class ChaosMonkey
{
    private const int Sessions = 200;
    private const int Workers = 4;
    private static readonly TimeSpan KillSlack = TimeSpan.FromMilliseconds(100);

    private readonly NodeRestarter _restarter;
    private readonly ChildProcess[] _nodes;
    private readonly TimeSpan _interval;
    private readonly int _maxKills;
    private readonly TextWriter _output;
    private readonly Random _random = new();
    private readonly string?[] _sessionBackends = new string?[Sessions];
    private readonly List<long> _killTimes = new();
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, UseCookies = false, PooledConnectionLifetime = TimeSpan.Zero })
    {
        Timeout = TimeSpan.FromSeconds(5),
    };
    private long _sent;
    private long _ok;
    private long _failedAtKill;
    private long _failedOther;
    private long _checked;
    private long _moved;
    private int _kills;
    private string? _lastFailure;

    public ChaosMonkey(NodeRestarter restarter, TimeSpan interval, int maxKills, TextWriter output)
    {
        _restarter = restarter;
        _nodes = restarter.Nodes;
        _interval = interval;
        _maxKills = maxKills;
        _output = output;
    }

    public async Task RunAsync(CancellationToken stop)
    {
        _output.WriteLine($"chaos: {Sessions} sticky sessions over http://127.0.0.1:8080/; every {_interval.TotalSeconds:0.#} s one node is killed with SIGKILL and restarted{(_maxKills > 0 ? $", {_maxKills} times" : "")}");
        var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(() => LoadAsync(w, stop))).ToList();
        var reporter = Task.Run(() => ReportAsync(stop));
        try
        {
            await KillLoopAsync(stop);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        await Task.WhenAll(workers.Append(reporter)).ContinueWith(_ => { });
        _output.WriteLine("chaos totals: " + Line());
    }

    private async Task KillLoopAsync(CancellationToken stop)
    {
        while (_maxKills == 0 || _kills < _maxKills)
        {
            await Task.Delay(_interval, stop);
            // A node that did not come back (or died on its own) is started again first.
            for (var i = 0; i < _nodes.Length; i++)
            {
                if (_nodes[i].HasExited)
                {
                    _output.WriteLine($"chaos: {_nodes[i].Name} is not running ({NodeRestarter.DescribeExit(_nodes[i].ExitCode)}); starting it again");
                    await _restarter.RestartAsync(i, stop);
                }
            }
            if (await _restarter.MembersUpAsync(stop) != _nodes.Length)
            {
                _output.WriteLine($"chaos: not every node is up ({_restarter.MembersUp}/{_nodes.Length}); no kill this round");
                continue;
            }
            var index = _random.Next(_nodes.Length);
            var victim = _nodes[index];
            lock (_killTimes)
            {
                _killTimes.Add(Stopwatch.GetTimestamp());
            }
            await victim.KillAsync();
            _kills++;
            _output.WriteLine($"chaos: kill -9 {victim.Name} (pid {victim.Pid})");

            await Task.Delay(TimeSpan.FromTicks(Math.Min(_interval.Ticks / 2, TimeSpan.FromSeconds(5).Ticks)), stop);
            await _restarter.RestartAsync(index, stop);
        }
        _output.WriteLine($"chaos: {_kills} kills done");
        await Task.Delay(Timeout.Infinite, stop);
    }

    private async Task LoadAsync(int worker, CancellationToken stop)
    {
        var session = worker;
        while (!stop.IsCancellationRequested)
        {
            var started = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _sent);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "http://127.0.0.1:8080/");
                request.Headers.ConnectionClose = true;
                request.Headers.Add("X-Session", $"chaos-{session}");
                using var response = await _http.SendAsync(request, stop);
                response.EnsureSuccessStatusCode();
                Interlocked.Increment(ref _ok);
                var backend = response.Headers.TryGetValues("X-Backend", out var values) ? values.FirstOrDefault() : null;
                var first = Interlocked.CompareExchange(ref _sessionBackends[session], backend, null);
                if (first is not null)
                {
                    Interlocked.Increment(ref _checked);
                    if (first != backend)
                    {
                        Interlocked.Increment(ref _moved);
                        _output.WriteLine($"chaos: session chaos-{session} MOVED from {first} to {backend}");
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                Interlocked.Decrement(ref _sent);
                return;
            }
            catch (Exception e)
            {
                _lastFailure = e.GetBaseException().Message;
                if (InFlightAtKill(started, Stopwatch.GetTimestamp()))
                {
                    Interlocked.Increment(ref _failedAtKill);
                }
                else
                {
                    Interlocked.Increment(ref _failedOther);
                    _output.WriteLine($"chaos: request of session chaos-{session} failed away from any kill: {_lastFailure}");
                }
            }
            session = (session + Workers) % Sessions;
            await Task.Delay(5, stop).ContinueWith(_ => { });
        }
    }

    private bool InFlightAtKill(long started, long ended)
    {
        var slack = (long)(KillSlack.TotalSeconds * Stopwatch.Frequency);
        lock (_killTimes)
        {
            return _killTimes.Any(kill => started <= kill + slack && ended >= kill);
        }
    }

    private async Task ReportAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(2000, stop).ContinueWith(_ => { });
            if (!stop.IsCancellationRequested)
            {
                _output.WriteLine($"[{DateTime.Now:HH:mm:ss}] " + Line());
            }
        }
    }

    private string Line()
    {
        var failed = Interlocked.Read(ref _failedAtKill) + Interlocked.Read(ref _failedOther);
        return $"requests {Interlocked.Read(ref _sent)} ok {Interlocked.Read(ref _ok)} failed {failed} " +
               $"({Interlocked.Read(ref _failedAtKill)} in flight at a kill, {Interlocked.Read(ref _failedOther)} other) | " +
               $"sessions {Sessions} checked {Interlocked.Read(ref _checked)} kept {Interlocked.Read(ref _checked) - Interlocked.Read(ref _moved)} moved {Interlocked.Read(ref _moved)} | " +
               $"members up {_restarter.MembersUp}/{_nodes.Length} | kills {_kills}";
    }
}
