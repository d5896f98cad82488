using System.Net;
using System.Net.Sockets;
using Balancer.Configuration;

namespace Balancer.Frontends;

/// <summary>
/// Binds, and at once releases, every address a node will listen on (its frontends and its admin
/// API), so that a taken port is found before the node joins its cluster or opens anything. A port
/// held by a frontend of another node with <c>reuse-port = on</c> binds here too when this frontend
/// also has it on, as it will when it opens. In active-passive mode the frontends open only on the
/// active node, and a standby on the same host would find the active node's ports taken: only the
/// admin API is checked then.
/// </summary>
public static class ListenerCheck
{
    /// <summary>One line per address that cannot be bound, naming the key, the address and the reason; empty when all can.</summary>
    public static IReadOnlyList<string> Problems(BalancerSettings settings)
    {
        var problems = new List<string>();
        if (settings.Node.StartFrontends && settings.Node.Mode == NodeMode.ActiveActive)
        {
            foreach (var frontend in settings.Frontends)
            {
                foreach (var address in frontend.Bind)
                {
                    Check($"balancer.frontends.{frontend.Name}.bind", ListenSockets.Resolve(address), frontend.ReusePort, problems);
                }
            }
        }
        if (settings.Node.AdminEnabled)
        {
            Check("balancer.node.admin.bind", ListenSockets.Resolve(settings.Node.AdminBind), reusePort: false, problems);
        }
        return problems;
    }

    /// <summary>The line for <paramref name="endPoint"/> when it cannot be bound, or null.</summary>
    public static string? Problem(string key, IPEndPoint endPoint, bool reusePort = false)
    {
        var problems = new List<string>();
        Check(key, endPoint, reusePort, problems);
        return problems.FirstOrDefault();
    }

    private static void Check(string key, IPEndPoint endPoint, bool reusePort, List<string> problems)
    {
        if (endPoint.Port == 0)
        {
            return;
        }
        try
        {
            using var socket = ListenSockets.CreateBound(endPoint, reusePort);
        }
        catch (SocketException e)
        {
            problems.Add($"{key}: cannot listen on {endPoint}: {Reason(e)}");
        }
        catch (PlatformNotSupportedException e)
        {
            problems.Add($"{key}: cannot listen on {endPoint}: {e.Message}");
        }
    }

    private static string Reason(SocketException e) => e.SocketErrorCode switch
    {
        SocketError.AddressAlreadyInUse => "the address is already in use (another process listens there)",
        SocketError.AddressNotAvailable => "no interface of this host has that address",
        SocketError.AccessDenied => "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        _ => e.Message,
    };
}
