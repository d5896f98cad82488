using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Balancer.Configuration;

/// <summary>
/// A connection to an etcd v3 cluster through dotnet-etcd's gRPC clients: one endpoint at a time,
/// the next one after a failure, with a token when etcd authentication is on. Calls carry a
/// deadline, so an etcd that stopped answering fails them instead of hanging them.
/// </summary>
public sealed class EtcdConnection : IDisposable
{
    /// <summary>How long one call may take.</summary>
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(3);

    private readonly IReadOnlyList<Uri> _endpoints;
    private readonly string _username;
    private readonly string _password;
    private readonly Lock _gate = new();
    private int _endpoint;
    private GrpcChannel? _channel;
    private string? _token;

    public EtcdConnection(IReadOnlyList<Uri> endpoints, string username = "", string password = "")
    {
        _endpoints = endpoints;
        _username = username;
        _password = password;
    }

    /// <summary>A connection as <paramref name="settings"/> say (the password read from its environment variable).</summary>
    public static EtcdConnection For(EtcdSettings settings) =>
        new(settings.Endpoints, settings.Username, settings.PasswordEnv.Length == 0 ? "" : Environment.GetEnvironmentVariable(settings.PasswordEnv) ?? "");

    /// <summary>The endpoint in use.</summary>
    public Uri Endpoint => _endpoints[Volatile.Read(ref _endpoint) % _endpoints.Count];

    private GrpcChannel Channel()
    {
        lock (_gate)
        {
            return _channel ??= GrpcChannel.ForAddress(Endpoint, new GrpcChannelOptions
            {
                // HTTP/2 pings find an etcd that stopped answering (frozen, or cut off) within seconds:
                // a watch stream alone would wait silently forever.
                HttpHandler = new SocketsHttpHandler
                {
                    UseProxy = false,
                    ConnectTimeout = CallTimeout,
                    EnableMultipleHttp2Connections = true,
                    // Not more often than etcd's --grpc-keepalive-min-time (5 s), or it answers too_many_pings.
                    KeepAlivePingDelay = TimeSpan.FromSeconds(6),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(3),
                    KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                },
            });
        }
    }

    /// <summary>A call failed: the next one goes to the next endpoint, over a new channel.</summary>
    public void Failed()
    {
        lock (_gate)
        {
            _channel?.Dispose();
            _channel = null;
            _token = null;
            _endpoint++;
        }
    }

    /// <summary>The call options: a deadline, and the token when etcd authentication is on.</summary>
    public async Task<CallOptions> OptionsAsync(CancellationToken cancellationToken, bool stream = false)
    {
        Metadata? headers = null;
        if (_username.Length > 0)
        {
            var token = _token;
            if (token is null)
            {
                var answer = await new Auth.AuthClient(Channel()).AuthenticateAsync(new AuthenticateRequest { Name = _username, Password = _password },
                    deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);
                token = _token = answer.Token;
            }
            headers = new Metadata { { "token", token } };
        }
        return new CallOptions(headers, stream ? null : DateTime.UtcNow + CallTimeout, cancellationToken);
    }

    public KV.KVClient KV => new(Channel());

    public Watch.WatchClient Watch => new(Channel());

    public Lease.LeaseClient Lease => new(Channel());

    /// <summary>Sets <paramref name="key"/> (under <paramref name="lease"/> when not 0); the revision it made.</summary>
    public async Task<long> PutAsync(string key, string value, long lease = 0, CancellationToken cancellationToken = default)
    {
        var answer = await KV.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value), Lease = lease },
            await OptionsAsync(cancellationToken));
        return answer.Header.Revision;
    }

    /// <summary>Deletes <paramref name="key"/>.</summary>
    public async Task DeleteAsync(string key, CancellationToken cancellationToken = default) =>
        await KV.DeleteRangeAsync(new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) }, await OptionsAsync(cancellationToken));

    /// <summary>The end of the key range that holds every key starting with <paramref name="prefix"/>.</summary>
    public static ByteString RangeEnd(string prefix)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (var i = bytes.Length - 1; i >= 0; i--)
        {
            if (bytes[i] < 0xff)
            {
                bytes[i]++;
                return ByteString.CopyFrom(bytes, 0, i + 1);
            }
        }
        return ByteString.CopyFrom(0);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _channel?.Dispose();
            _channel = null;
        }
    }
}
