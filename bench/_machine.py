"""What the benches read their timings against: this machine's sustained float32 matmul rate, measured now."""

from __future__ import annotations

import time


def gemm_gflops(n: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of repeated n × n float32 torch matmuls over ``seconds`` (all of torch's threads)."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        done += 1
    return 2 * n ** 3 * done / (time.perf_counter() - t0) / 1e9
