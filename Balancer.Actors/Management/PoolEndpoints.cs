using Akka.Actor;
using Balancer.Configuration;
using Balancer.Model;
using Balancer.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Balancer.Management.AdminHttp;

namespace Balancer.Management;

/// <summary>
/// The admin API's pool routes: pools, their backends, and the changes an operator makes to them
/// (admin state, weight, backends added and removed), applied on every node through the pool's routing actor.
/// </summary>
internal static class PoolEndpoints
{
    public static void Map(IEndpointRouteBuilder routes, AdminContext admin)
    {
        routes.MapGet("/api/pools", () => Results.Json(admin.Pools.Pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(PoolView.Of), Json));
        routes.MapGet("/api/pools/{pool}/backends", (string pool) => WithPool(admin, pool, handle =>
            Results.Json(handle.Snapshot.Backends.Select(BackendView.Of), Json)));
        routes.MapPost("/api/pools/{pool}/backends/{backend}/state", (string pool, string backend, HttpContext context) => SetState(admin, pool, backend, context)).RequireToken();
        routes.MapPost("/api/pools/{pool}/backends/{backend}/weight", (string pool, string backend, HttpContext context) => SetWeight(admin, pool, backend, context)).RequireToken();
        routes.MapPost("/api/pools/{pool}/backends/{backend}", (string pool, string backend, HttpContext context) => AddBackend(admin, pool, backend, context)).RequireToken();
        routes.MapDelete("/api/pools/{pool}/backends/{backend}", (string pool, string backend) =>
            WithPoolAsync(admin, pool, _ => ChangeAsync(admin, pool, new PoolRouter.RemoveBackend(backend), $"backend {pool}/{backend} removed"))).RequireToken();
    }

    private static async Task<IResult> SetState(AdminContext admin, string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<StateRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (!Enum.TryParse<BackendAdminState>(request!.State, ignoreCase: true, out var state) || !Enum.IsDefined(state) || int.TryParse(request.State, out _))
        {
            return Problem(StatusCodes.Status400BadRequest, "bad state", $"state: expected ready, drain or maint, got \"{request.State}\"");
        }
        return await WithPoolAsync(admin, pool, _ => ChangeAsync(admin, pool, new PoolRouter.SetAdminState(backend, state), $"backend {pool}/{backend}: admin state {AdminText.State(state)}"));
    }

    private static async Task<IResult> SetWeight(AdminContext admin, string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<WeightRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (request!.Weight is not { } weight)
        {
            return Problem(StatusCodes.Status400BadRequest, "bad weight", $"weight: expected a number {BackendRules.WeightRange}");
        }
        return await WithPoolAsync(admin, pool, _ => ChangeAsync(admin, pool, new PoolRouter.SetWeight(backend, weight), $"backend {pool}/{backend} weight {weight}"));
    }

    private static async Task<IResult> AddBackend(AdminContext admin, string pool, string backend, HttpContext context)
    {
        var (request, problem) = await ReadBodyAsync<AddBackendRequest>(context);
        if (problem is not null)
        {
            return problem;
        }
        if (string.IsNullOrWhiteSpace(request!.Address))
        {
            return Problem(StatusCodes.Status400BadRequest, "bad address", "address: expected HOST:PORT");
        }
        return await WithPoolAsync(admin, pool, _ => ChangeAsync(admin, pool, new PoolRouter.AddBackend(backend, request.Address, request.Weight), $"backend {pool}/{backend} added at {request.Address}"));
    }

    private static async Task<IResult> ChangeAsync(AdminContext admin, string pool, object change, string done)
    {
        if (admin.Pools.Find(pool)!.Router.IsNobody())
        {
            return Problem(StatusCodes.Status503ServiceUnavailable, "starting", $"pool {pool}: its routing actor has not started yet; try again in a moment");
        }
        try
        {
            var reply = await admin.ChangePoolAsync(pool, change);
            return reply switch
            {
                Status.Success => Results.Json(new ChangeResult(done), Json),
                Status.Failure { Cause: KeyNotFoundException e } => Problem(StatusCodes.Status404NotFound, "unknown backend", e.Message),
                Status.Failure { Cause: ArgumentException e } => Problem(StatusCodes.Status400BadRequest, "bad change", e.Message),
                Status.Failure { Cause: TimeoutException e } => Problem(StatusCodes.Status504GatewayTimeout, "not confirmed by a majority", e.Message),
                Status.Failure { Cause: IOException e } => Problem(StatusCodes.Status507InsufficientStorage, "not stored durably", e.Message),
                Status.Failure f => Problem(StatusCodes.Status500InternalServerError, "change failed", f.Cause.Message),
                _ => Problem(StatusCodes.Status500InternalServerError, "change failed", "unexpected reply from the pool's routing actor"),
            };
        }
        catch (AskTimeoutException)
        {
            return Problem(StatusCodes.Status504GatewayTimeout, "no answer", $"pool {pool}: the routing actor did not answer in time");
        }
    }
}
