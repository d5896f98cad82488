using System.Net;
using System.Text;
using System.Text.Json;
using Balancer.Membership;

namespace Balancer.Management;

/// <summary>
/// The status page served at <c>GET /</c>: one self-contained HTML file (no CDN), embedded in the
/// assembly. Its tables are filled here, on the server, so that the first paint (a screenshot, a
/// browser without JavaScript, a slow link) already shows the node's state; the page's script then
/// refreshes the same markup every second and adds the live event list.
/// </summary>
internal static class StatusPage
{
    private static readonly Lazy<string> Template = new(() => EmbeddedFile.Read("Balancer.Management.status.html"));

    /// <summary>The page with this node's cluster, frontends and pools as they are now.</summary>
    public static string Render(AdminContext admin)
    {
        var cluster = admin.Membership.Current();
        var pools = admin.Pools.Pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        return Template.Value
            .Replace("<!--self-->", Encode(cluster.Self))
            .Replace("<!--mode-->", Encode(JsonText(cluster.Mode)))
            .Replace("<!--updated-->", $"rendered {DateTime.Now:HH:mm:ss}")
            .Replace("<!--config-source-->", ConfigSource(admin))
            .Replace("<!--member-count-->", $"({cluster.Members.Count(m => m.Status == "up")} of {cluster.Members.Length} up)")
            .Replace("<!--members-->", Members(cluster))
            .Replace("<!--frontends-->", Frontends(admin))
            .Replace("<!--pools-->", string.Concat(pools.Select(p => Pool(p))));
    }

    /// <summary>A warning while etcd cannot be reached: the node serves with what it had.</summary>
    private static string ConfigSource(AdminContext admin) =>
        BalancerExtension.Get(admin.System).EtcdStatus.Current is { Reachable: false } etcd
            ? $"<span id=\"config-source\" class=\"badge down\">etcd unreachable since {etcd.Since:HH:mm:ss}Z: serving with the configuration and backends it had</span>"
            : "";

    private static string Members(ClusterFacts cluster)
    {
        var html = new StringBuilder();
        foreach (var member in cluster.Members)
        {
            html.Append($"<tr data-member=\"{Encode(member.Address)}\"><td>{Encode(member.Address)}</td><td>{Badge(member.Status)}</td>")
                .Append($"<td>{(member.Reachable ? "yes" : Badge("unreachable"))}</td><td>{Badge(JsonText(member.Duty))}</td>")
                .Append($"<td>{(member.Address == cluster.Leader ? "leader" : "")}</td></tr>");
        }
        return html.ToString();
    }

    private static string Frontends(AdminContext admin)
    {
        var html = new StringBuilder();
        foreach (var frontend in admin.Frontends.Select(f => FrontendView.Of(f, admin.FrontendCounters(f.Name))))
        {
            html.Append($"<tr data-frontend=\"{Encode(frontend.Name)}\"><td>{Encode(frontend.Name)}</td><td>{Encode(frontend.Mode)}</td><td>{Encode(frontend.Pool)}</td>")
                .Append($"<td>{(frontend.Listening.Count == 0 ? Badge("closed") : Encode(string.Join(", ", frontend.Listening)))}</td>")
                .Append($"<td class=\"num\">{frontend.Accepted}</td><td class=\"num\">{frontend.Open}</td><td class=\"num\">{frontend.Refused}</td></tr>");
        }
        return html.ToString();
    }

    private static string Pool(Routing.PoolHandle handle)
    {
        var pool = PoolView.Of(handle);
        var html = new StringBuilder();
        html.Append($"<section class=\"card\" data-pool=\"{Encode(pool.Name)}\"><h2>Pool {Encode(pool.Name)} <small>{Encode(PoolSummary(pool))}</small>")
            .Append(pool.Panic ? " <span class=\"panic\">PANIC</span>" : "")
            .Append("</h2><div class=\"chart-label\">requests a second: from the next reading</div><table><thead><tr>");
        foreach (var heading in BackendHeadings)
        {
            html.Append($"<th>{heading}</th>");
        }
        html.Append("</tr></thead><tbody>");
        foreach (var backend in handle.Snapshot.Backends.Select(BackendView.Of))
        {
            var id = $"{backend.Pool}/{backend.Name}";
            html.Append($"<tr data-backend=\"{Encode(id)}\" data-health=\"{backend.Health}\" data-state=\"{backend.AdminState}\">")
                .Append($"<td>{Encode(backend.Name)}</td><td>{Encode(backend.Address)}</td>")
                .Append($"<td>{Badge(backend.Health)}{(backend.Health == "down" ? $" <span class=\"reason\">{Encode(backend.HealthReason)}</span>" : "")}</td>")
                .Append($"<td>{Badge(backend.AdminState)}</td>")
                .Append($"<td class=\"num\">{backend.Weight}</td><td class=\"num\">{backend.InFlight}</td><td class=\"num\">{backend.Requests}</td>")
                .Append($"<td class=\"num\">{backend.ConnectFailures + backend.ResponseFailures}</td><td class=\"num\">{backend.Ejections}</td>")
                .Append("<td class=\"num\"></td><td class=\"num\">-</td><td class=\"num\">-</td><td class=\"num\">-</td><td></td><td>")
                .Append(string.Concat(new[] { "ready", "drain", "maint" }.Select(state =>
                    $"<button type=\"button\" data-action=\"{state}\" data-pool=\"{Encode(backend.Pool)}\" data-name=\"{Encode(backend.Name)}\">{state}</button>")))
                .Append("</td></tr>");
        }
        return html.Append("</tbody></table></section>").ToString();
    }

    /// <summary>The backend table's columns; the script builds the same ones.</summary>
    private static readonly string[] BackendHeadings = ["Backend", "Address", "Health", "State", "Weight", "In flight", "Requests", "Failures", "Ejections", "Req/s", "Errors", "p50 ms", "p99 ms", "Last minute", "Change"];

    private static string PoolSummary(PoolView pool) =>
        $"{pool.Algorithm}, affinity {pool.Affinity}, {pool.Healthy}/{pool.Backends} healthy" + (pool.AffinityEntries is { } sessions ? $", {sessions} sessions" : "");

    private static string Badge(string text) => $"<span class=\"badge {Encode(text)}\">{Encode(text)}</span>";

    /// <summary>An enum as the API's JSON spells it.</summary>
    private static string JsonText<T>(T value) => JsonSerializer.SerializeToElement(value, AdminHttp.Json).ToString();

    private static string Encode(string text) => WebUtility.HtmlEncode(text);
}
