using Microsoft.Playwright;

namespace Balancer.Tests.TestSupport;

/// <summary>
/// Debian's Chromium, headless, driven by Playwright for .NET (its own browser download is not
/// used: <see cref="Executable"/> is). Disposing closes the browser and stops Playwright's driver.
/// </summary>
internal sealed class Chromium : IAsyncDisposable
{
    public const string Executable = "/usr/bin/chromium";

    private readonly IPlaywright _playwright;

    private Chromium(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Browser = browser;
    }

    public IBrowser Browser { get; }

    public static async Task<Chromium> LaunchAsync()
    {
        if (!File.Exists(Executable))
        {
            // .ci/run installs it; a developer machine without it cannot run the browser tests.
            throw new InvalidOperationException($"{Executable} is missing: apt-get install chromium");
        }
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = Executable,
                Headless = true,
                // Tests run as root, where Chromium's sandbox cannot start.
                Args = ["--no-sandbox", "--disable-gpu"],
                Timeout = 60_000,
            });
            return new Chromium(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    /// <summary>A page in a context of its own (no shared storage), optionally with scripts off.</summary>
    public async Task<IPage> OpenAsync(Uri url, bool javaScript = true)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { JavaScriptEnabled = javaScript, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(15_000);
        await page.GotoAsync(url.ToString());
        return page;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Browser.CloseAsync();
        }
        finally
        {
            // Stops Playwright's driver, which also ends a browser that did not close.
            _playwright.Dispose();
        }
    }
}
