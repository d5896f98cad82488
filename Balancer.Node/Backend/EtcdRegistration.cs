using Balancer.Configuration;
using Etcdserverpb;

namespace Balancer.Node.Backend;

/// <summary>
/// Registers a backend in etcd as Balancer's service registry reads it: the key
/// <c>PREFIX/pools/POOL/backends/NAME</c> = "HOST:PORT" under a lease kept alive every third of its
/// TTL. When etcd is away the lease is granted and the key written again once it answers; on a
/// clean stop the lease is revoked, so the backend leaves the pool at once rather than at expiry.
/// </summary>
internal sealed class EtcdRegistration : IAsyncDisposable
{
    private readonly EtcdConnection _etcd;
    private readonly string _key;
    private readonly string _value;
    private readonly TimeSpan _ttl;
    private readonly TextWriter _output;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _lease;
    private TimeSpan _granted;

    public EtcdRegistration(IReadOnlyList<Uri> endpoints, string prefix, string pool, string name, string address, TimeSpan ttl, TextWriter output)
    {
        _etcd = new EtcdConnection(endpoints);
        _key = $"{prefix}/pools/{pool}/backends/{name}";
        _value = address;
        _ttl = ttl;
        _output = output;
        _loop = Task.Run(KeepRegisteredAsync);
    }

    private async Task KeepRegisteredAsync()
    {
        var registered = false;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (_lease == 0)
                {
                    var grant = await _etcd.Lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = (long)_ttl.TotalSeconds }, await _etcd.OptionsAsync(_stop.Token));
                    _lease = grant.ID;
                    // Kept alive at a third of what etcd granted (it may grant more than asked).
                    _granted = TimeSpan.FromSeconds(Math.Max(1, grant.TTL));
                    await _etcd.PutAsync(_key, _value, _lease, _stop.Token);
                    _output.WriteLine($"registered in etcd {_etcd.Endpoint}: {_key} = {_value} (lease {_lease:x}, {_ttl.TotalSeconds:0} s)");
                    registered = true;
                }
                using var keepAlive = _etcd.Lease.LeaseKeepAlive(await _etcd.OptionsAsync(_stop.Token, stream: true));
                while (!_stop.IsCancellationRequested)
                {
                    await keepAlive.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = _lease }, _stop.Token);
                    if (!await keepAlive.ResponseStream.MoveNext(_stop.Token) || keepAlive.ResponseStream.Current.TTL <= 0)
                    {
                        // Expired while etcd was away: register anew.
                        _lease = 0;
                        break;
                    }
                    await Task.Delay(_granted / 3, _stop.Token);
                }
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (registered)
                {
                    _output.WriteLine($"etcd {_etcd.Endpoint} unreachable ({e.GetBaseException().Message}); registering again when it answers");
                    registered = false;
                }
                _etcd.Failed();
                _lease = 0;
                await Task.Delay(TimeSpan.FromSeconds(1), _stop.Token).ContinueWith(_ => { });
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _loop.ContinueWith(_ => { });
        if (_lease != 0)
        {
            try
            {
                // Out of the pool now, not at the lease's expiry.
                await _etcd.Lease.LeaseRevokeAsync(new LeaseRevokeRequest { ID = _lease }, await _etcd.OptionsAsync(CancellationToken.None));
                _output.WriteLine($"deregistered from etcd: {_key}");
            }
            catch (Exception e)
            {
                _output.WriteLine($"could not deregister from etcd ({e.GetBaseException().Message}): {_key} goes when its lease expires");
            }
        }
        _etcd.Dispose();
        _stop.Dispose();
    }
}
