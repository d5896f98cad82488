using Akka.Event;
using Microsoft.Extensions.Logging;
using ILogger = Microsoft.Extensions.Logging.ILogger;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace Balancer.Telemetry;

/// <summary>
/// Routes Kestrel's and YARP's logging into the ActorSystem's logging, so a node writes one log
/// stream whatever produced the line.
/// </summary>
internal sealed class AkkaLoggerProvider : ILoggerProvider
{
    private readonly Func<string, ILoggingAdapter> _loggerFor;
    private readonly LogLevel _minimum;

    /// <param name="loggerFor">The Akka logger of a category (a frontend's follows the node's current incarnation).</param>
    /// <param name="minimum">The lowest level written.</param>
    public AkkaLoggerProvider(Func<string, ILoggingAdapter> loggerFor, LogLevel minimum)
    {
        _loggerFor = loggerFor;
        _minimum = minimum;
    }

    public ILogger CreateLogger(string categoryName) => new AkkaLogger(_loggerFor(categoryName), _minimum);

    public void Dispose()
    {
    }

    private sealed class AkkaLogger : ILogger
    {
        private readonly ILoggingAdapter _adapter;
        private readonly LogLevel _minimum;

        public AkkaLogger(ILoggingAdapter adapter, LogLevel minimum)
        {
            _adapter = adapter;
            _minimum = minimum;
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= _minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel) || eventId.Name == "Http2DisabledWithHttp1AndNoTls")
            {
                // Kestrel warns that a cleartext listener allowing HTTP/1.1 and HTTP/2 takes only
                // HTTP/1.1; a frontend's tells HTTP/2 by its preface (CleartextHttp2), so it is not so.
                return;
            }
            var message = formatter(state, exception);
            switch (logLevel)
            {
                case LogLevel.Critical or LogLevel.Error:
                    _adapter.Error(exception, "{0}", message);
                    break;
                case LogLevel.Warning:
                    _adapter.Warning(exception, "{0}", message);
                    break;
                case LogLevel.Information:
                    _adapter.Info("{0}", message);
                    break;
                default:
                    _adapter.Debug("{0}", message);
                    break;
            }
        }
    }
}
