using System.Text.Json;
using System.Text.Json.Serialization;
using Balancer.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Balancer.Management;

/// <summary>How every admin endpoint reads requests and writes answers and problems.</summary>
internal static class AdminHttp
{
    /// <summary>JSON as the admin API writes and reads it: camelCase, enums in kebab-case.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        // Served as application/json only, never inlined into HTML, so quotes need no \u escapes.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>An RFC 7807 problem with a one-line <paramref name="detail"/>.</summary>
    public static IResult Problem(int status, string title, string detail) =>
        Results.Json(new { type = "about:blank", title, status, detail }, Json, "application/problem+json", status);

    /// <summary>The request's JSON body, or the 400 problem saying what was wrong with it.</summary>
    public static async Task<(T? Body, IResult? Problem)> ReadBodyAsync<T>(HttpContext context) where T : class
    {
        try
        {
            var body = await JsonSerializer.DeserializeAsync<T>(context.Request.Body, Json, context.RequestAborted);
            return body is null ? (null, Problem(StatusCodes.Status400BadRequest, "bad body", "expected a JSON object")) : (body, null);
        }
        catch (JsonException e)
        {
            return (null, Problem(StatusCodes.Status400BadRequest, "bad body", $"expected a JSON object: {e.Message.Split('.')[0]}"));
        }
        catch (BadHttpRequestException e)
        {
            return (null, Problem(e.StatusCode, "bad body", e.Message));
        }
    }

    /// <summary>The handle of <paramref name="pool"/>, or the 404 problem naming the pools there are.</summary>
    public static IResult WithPool(AdminContext admin, string pool, Func<PoolHandle, IResult> then) =>
        admin.Pools.Find(pool) is { } handle ? then(handle) : UnknownPool(admin, pool);

    /// <summary>Like <see cref="WithPool"/> for an asynchronous answer.</summary>
    public static Task<IResult> WithPoolAsync(AdminContext admin, string pool, Func<PoolHandle, Task<IResult>> then) =>
        admin.Pools.Find(pool) is { } handle ? then(handle) : Task.FromResult(UnknownPool(admin, pool));

    public static IResult UnknownPool(AdminContext admin, string pool) => Problem(StatusCodes.Status404NotFound, "unknown pool",
        $"no pool \"{pool}\" (pools: {string.Join(", ", admin.Pools.Pools.Keys.Order(StringComparer.Ordinal))})");

    /// <summary>
    /// Marks an endpoint that needs <c>Authorization: Bearer TOKEN</c> when the node has a token:
    /// every change, and reading session keys. Read from the matched endpoint, so neither the case
    /// nor the spelling of a path can pass by it.
    /// </summary>
    public static TBuilder RequireToken<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(TokenRequired.Instance);
}

/// <summary>Endpoint metadata: the endpoint needs the admin token (see <see cref="AdminHttp.RequireToken"/>).</summary>
internal sealed class TokenRequired
{
    public static readonly TokenRequired Instance = new();
    private TokenRequired() { }
}
