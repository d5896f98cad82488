using Balancer.Node.Backend.Rpc;
using Grpc.Core;

namespace Balancer.Node.Backend;

/// <summary>The demo backend's gRPC service (<c>demo.proto</c>): every reply names the backend.</summary>
internal sealed class DemoGrpcService(string backend) : Rpc.Demo.DemoBase
{
    public override async Task<HelloReply> Hello(HelloRequest request, ServerCallContext context)
    {
        if (request.DelayMs > 0)
        {
            await Task.Delay(Math.Min(request.DelayMs, 600_000), context.CancellationToken);
        }
        if (request.FailWith is > 0 and <= 16)
        {
            throw new RpcException(new Status((StatusCode)request.FailWith, $"{backend} failed as asked"));
        }
        return new HelloReply { Message = $"hello {request.Name}", Backend = backend };
    }

    public override async Task Count(CountRequest request, IServerStreamWriter<CountReply> responseStream, ServerCallContext context)
    {
        for (var number = 1; number <= Math.Min(request.Count, 100_000); number++)
        {
            if (number > 1 && request.IntervalMs > 0)
            {
                await Task.Delay(Math.Min(request.IntervalMs, 60_000), context.CancellationToken);
            }
            await responseStream.WriteAsync(new CountReply { Number = number, Backend = backend }, context.CancellationToken);
        }
    }

    public override async Task<SumReply> Sum(IAsyncStreamReader<Number> requestStream, ServerCallContext context)
    {
        var reply = new SumReply { Backend = backend };
        await foreach (var number in requestStream.ReadAllAsync(context.CancellationToken))
        {
            reply.Sum += number.Value;
            reply.Count++;
        }
        return reply;
    }

    public override async Task Chat(IAsyncStreamReader<ChatMessage> requestStream, IServerStreamWriter<ChatMessage> responseStream, ServerCallContext context)
    {
        await foreach (var message in requestStream.ReadAllAsync(context.CancellationToken))
        {
            await responseStream.WriteAsync(new ChatMessage { Text = message.Text, Backend = backend }, context.CancellationToken);
        }
    }
}
