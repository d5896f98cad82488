using Akka.Actor;
using Akka.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>The admin API's cluster routes: <c>GET /api/cluster</c>, <c>POST /api/cluster/{join|leave|down|down-unreachable}</c>.</summary>
internal static class ClusterEndpoints
{
    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/cluster", () => Results.Json(admin.Membership.Current(), Json));
        routes.MapPost("/api/cluster/{action}", (string action, HttpContext context) => ClusterAction(admin, action, context)).RequireToken();
    }

    private static async Task<IResult> ClusterAction(AdminContext admin, string action, HttpContext context)
    {
        var cluster = Cluster.Get(admin.System);
        if (action == "down-unreachable")
        {
            var unreachable = cluster.State.Unreachable.Select(m => m.Address).ToList();
            foreach (var member in unreachable)
            {
                cluster.Down(member);
            }
            return Results.Json(new ChangeResult(unreachable.Count == 0 ? "no unreachable members" : $"downing {string.Join(", ", unreachable)}"), Json);
        }
        if (action is not ("join" or "leave" or "down"))
        {
            return Problem(StatusCodes.Status404NotFound, "no such cluster action", $"\"{action}\" is not join, leave, down or down-unreachable");
        }
        var (request, problem) = await ReadBodyAsync<MemberRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        Address address;
        try
        {
            address = Address.Parse(request!.Address ?? throw new FormatException("missing \"address\""));
        }
        catch (Exception e) when (e is FormatException or UriFormatException or ArgumentException)
        {
            return Problem(StatusCodes.Status400BadRequest, "bad address", $"address: expected akka.tcp://SYSTEM@HOST:PORT ({e.Message})");
        }
        if (action == "join")
        {
            cluster.Join(address);
            return Results.Json(new ChangeResult($"joining {address}"), Json);
        }
        if (!cluster.State.Members.Any(m => m.Address.Equals(address)))
        {
            return Problem(StatusCodes.Status404NotFound, "unknown member",
                $"{address} is not a member (members: {string.Join(", ", cluster.State.Members.Select(m => m.Address))})");
        }
        if (action == "leave")
        {
            cluster.Leave(address);
            return Results.Json(new ChangeResult($"{address} is leaving"), Json);
        }
        cluster.Down(address);
        return Results.Json(new ChangeResult($"{address} is being downed"), Json);
    }
}
