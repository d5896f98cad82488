using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using ITlsApplicationProtocolFeature = Microsoft.AspNetCore.Server.Kestrel.Core.Features.ITlsApplicationProtocolFeature;
using Microsoft.AspNetCore.Http.Features;

namespace Balancer.Frontends.Http;

/// <summary>
/// Lets a cleartext listener of <c>protocols = http1-and-2</c> take HTTP/2 with prior knowledge
/// (RFC 9113 3.3, what gRPC clients send) besides HTTP/1.1. Kestrel picks HTTP/1.1 for every
/// cleartext connection of such a listener; this looks at the first bytes without consuming them
/// and, when they are the HTTP/2 connection preface, tells Kestrel that the connection negotiated
/// h2, as ALPN would over TLS. The proxy then takes every such request's scheme for http.
/// </summary>
internal static class CleartextHttp2
{
    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public static async Task RunAsync(ConnectionDelegate next, ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(connection.ConnectionClosed).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionResetException)
            {
                return;
            }
            var buffer = result.Buffer;
            var (decided, http2) = Classify(buffer);
            if (decided || result.IsCompleted || result.IsCanceled)
            {
                // Nothing consumed, nothing examined: Kestrel reads these bytes again.
                input.AdvanceTo(buffer.Start);
                if (http2)
                {
                    connection.Features.Set<ITlsConnectionFeature>(PriorKnowledge.Instance);
                    connection.Features.Set<ITlsApplicationProtocolFeature>(PriorKnowledge.Instance);
                }
                break;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
        await next(connection).ConfigureAwait(false);
    }

    /// <summary>Whether the bytes so far decide the protocol, and whether it is HTTP/2.</summary>
    internal static (bool Decided, bool Http2) Classify(ReadOnlySequence<byte> buffer)
    {
        Span<byte> start = stackalloc byte[24];
        var length = (int)Math.Min(buffer.Length, start.Length);
        buffer.Slice(0, length).CopyTo(start);
        if (!Preface[..length].SequenceEqual(start[..length]))
        {
            return (true, false);
        }
        return length == Preface.Length ? (true, true) : (false, false);
    }

    private sealed class PriorKnowledge : ITlsConnectionFeature, ITlsApplicationProtocolFeature
    {
        public static readonly PriorKnowledge Instance = new();

        private static readonly ReadOnlyMemory<byte> H2 = "h2"u8.ToArray();

        public ReadOnlyMemory<byte> ApplicationProtocol => H2;

        public X509Certificate2? ClientCertificate
        {
            get => null;
            set { }
        }

        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult<X509Certificate2?>(null);
    }
}
