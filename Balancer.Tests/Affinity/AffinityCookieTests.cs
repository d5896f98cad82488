using Balancer.Affinity;

namespace Balancer.Tests.Affinity;

/// <summary>The signed cookie of affinity.mode = cookie, attacked as a client would: edited, replayed after its end, moved to another pool.</summary>
public class AffinityCookieTests
{
    private static readonly AffinityKey Key = new("a-secret-of-sixteen-or-more");

    [Fact]
    public void ACookie_NamesItsBackend_UntilItsSessionEnds_AndNotAfter()
    {
        var now = DateTimeOffset.Parse("2026-11-25T10:00:00Z");
        var cookie = new AffinityCookie(Key, "app", TimeSpan.FromMinutes(30), () => now);
        var value = cookie.Issue("b")!;

        now += TimeSpan.FromMinutes(29);
        Assert.Equal("b", cookie.Verify(value));
        // A replay after the session's end is no session: the request is balanced afresh.
        now += TimeSpan.FromMinutes(2);
        Assert.Null(cookie.Verify(value));
    }

    [Fact]
    public void AnEditedCookie_IsNoSession_WhateverWasEdited()
    {
        var now = DateTimeOffset.Parse("2026-11-25T10:00:00Z");
        var cookie = new AffinityCookie(Key, "app", TimeSpan.FromMinutes(30), () => now);
        var value = cookie.Issue("b")!;
        var parts = value.Split('.');
        Assert.Equal(3, parts.Length);

        // Another backend, a later end, the MAC of another pool, or the old unsigned-lifetime form.
        Assert.Null(cookie.Verify($"a.{parts[1]}.{parts[2]}"));
        Assert.Null(cookie.Verify($"b.{long.Parse(parts[1]) + 86_400}.{parts[2]}"));
        Assert.Null(new AffinityCookie(Key, "other", TimeSpan.FromMinutes(30), () => now).Verify(value));
        Assert.Null(cookie.Verify($"b.{parts[2]}"));
        Assert.Null(cookie.Verify("b..x"));
        Assert.Null(cookie.Verify(new string('b', 300)));
    }
}
