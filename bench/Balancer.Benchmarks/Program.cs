using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Balancer.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
