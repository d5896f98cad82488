#!/usr/bin/env python3
"""Folds `perf script -F comm,tid,ip,sym,dso` output (with call chains) of one Balancer node into
the parts of the request path, by the frame each sample was taken in, and prints each part's share
and CPU microseconds a request. Usage: fold-profile.py PERF_SCRIPT_OUTPUT CPU_US_PER_REQUEST"""
import collections
import re
import sys

# A managed frame from the runtime's perf map: "[instance] RETURN-TYPE [Assembly] Namespace.Type::Method(...)[Tier]",
# where the return type may carry an assembly of its own ("valuetype [System.Runtime]System.ValueTuple`2<...>").
MANAGED = re.compile(r"\[(?P<assembly>[\w.]+)\] (?P<type>[^\s:(]+)::")

PARTS = [  # (part, prefixes of a managed type's full name); first match wins
    ("Kestrel: connections, HTTP/1.1 parsing, response writing", ("Microsoft.AspNetCore.Server.Kestrel",)),
    ("System.IO.Pipelines (Kestrel's buffers)", ("System.IO.Pipelines",)),
    ("ASP.NET Core: HttpContext, features, hosting", ("Microsoft.AspNetCore.",)),
    ("YARP forwarder: request/response copy, transforms", ("Yarp.",)),
    ("HttpClient: SocketsHttpHandler, HttpRequestMessage, headers", ("System.Net.Http",)),
    ("sockets (managed side)", ("System.Net.Sockets", "System.Net.")),
    ("Balancer: routing, selection, counters, transforms", ("Balancer.",)),
    ("thread pool, tasks, async state machines", ("System.Threading", "System.Runtime.CompilerServices")),
    ("Akka (cluster, remoting, actors)", ("Akka.", "DotNetty.")),
    ("Microsoft.Extensions (logging, metrics, DI)", ("Microsoft.Extensions.",)),
    ("BCL: strings, spans, collections, memory", ("System.",)),
]
KERNEL_CALLS = [  # (what, substrings of a kernel frame), looked for from the syscall entry down
    ("kernel: send (TCP to the client or backend, loopback delivery)", ("sys_sendto", "sys_sendmsg", "sys_write", "sys_writev")),
    ("kernel: receive", ("sys_recvfrom", "sys_recvmsg", "sys_read", "sys_readv")),
    ("kernel: epoll", ("sys_epoll_wait", "sys_epoll_pwait", "sys_epoll_ctl")),
    ("kernel: futex (threads waking each other)", ("sys_futex",)),
]

def part_of(symbol, dso):
    if "kernel.kallsyms" in dso:
        return "kernel"
    if symbol.startswith("stub "):
        return "runtime: GC, allocation, casts, stubs (libcoreclr)"
    match = MANAGED.search(symbol)
    if match:
        full = match.group("type")
        for part, prefixes in PARTS:
            if full.startswith(prefixes):
                return part
        return "other managed code"
    base = dso.rsplit("/", 1)[-1]
    if base.startswith("libcoreclr"):
        return "runtime: GC, allocation, casts, stubs (libcoreclr)"
    if base.startswith("libclrjit"):
        return "JIT (libclrjit)"
    if base.startswith("libSystem.Native"):
        return "System.Native (syscall shims)"
    if base.startswith(("libc.so", "libc-", "ld-linux", "libpthread")):
        return "libc"
    if base.endswith(".dll"):
        name = base[:-4]
        for part, prefixes in PARTS:
            if name.startswith(tuple(p.rstrip(".") for p in prefixes)):
                return part + " (precompiled)"
        return "other precompiled code (" + name + ")"
    if base.startswith("perf-") or symbol.startswith("[unknown]"):
        return "unresolved frames"
    return "native: " + base

def kernel_detail(frames):
    for symbol, dso in reversed(frames):  # from the outermost frame inwards: the syscall entry first
        if "kernel.kallsyms" not in dso:
            continue
        for what, needles in KERNEL_CALLS:
            if symbol.endswith(needles):
                return what
    if any("softirq" in s or "net_rx" in s for s, _ in frames):
        return "kernel: network softirq"
    return "kernel: other (scheduling, interrupts, page faults)"

def samples(path):
    frames = []
    with open(path, errors="replace") as lines:
        for line in lines:
            if not line.strip():
                if frames:
                    yield frames
                frames = []
                continue
            if line.startswith((" ", "\t")):
                m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
                if m:
                    frames.append((m.group(1), m.group(2)))
    if frames:
        yield frames

def main():
    path, cpu_us = sys.argv[1], float(sys.argv[2])
    parts = collections.Counter()
    leaves = collections.Counter()
    total = 0
    for frames in samples(path):
        total += 1
        symbol, dso = frames[0]
        part = part_of(symbol, dso)
        if part == "kernel":
            part = kernel_detail(frames)
        parts[part] += 1
        leaves[re.sub(r"\[(Optimized|OptimizedTier1|Tier0|Tier1|QuickJitted|PreJIT|Instrumented)[^\]]*\]$", "", symbol)[:150]] += 1
    if total == 0:
        print("no samples")
        return
    print(f"{total} samples")
    if not any(part.startswith("kernel") for part in parts):
        print("no kernel samples: perf sampled user mode only (kernel.perf_event_paranoid?), so the kernel's share is missing")
    print()
    print(f"| {'where the sample was taken':<64} | share | µs/request |")
    print(f"|{'-' * 66}|------:|-----------:|")
    for part, n in parts.most_common():
        print(f"| {part:<64} | {100 * n / total:4.1f} % | {cpu_us * n / total:10.2f} |")
    print()
    print("hottest frames:")
    for symbol, n in leaves.most_common(25):
        print(f"  {100 * n / total:4.1f} %  {symbol}")

main()
