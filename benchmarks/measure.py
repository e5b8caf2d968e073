"""How the benchmark measures: median wall time of interleaved repeats, peak allocator bytes, resident weights."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_times(jobs: dict[str, Callable[[], object]], repeats: int, warmup: int,
                 device: torch.device) -> dict[str, float]:
    """Median seconds per job. Jobs run round-robin (warm-up rounds first, untimed) so that load from other
    processes on a shared machine hits every job alike instead of whichever happened to run during a spike."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for round_index in range(warmup + repeats):
        for name, job in jobs.items():
            _synchronize(device)
            start = time.perf_counter()
            job()
            _synchronize(device)
            if round_index >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_allocated_bytes(job: Callable[[], object], device: torch.device) -> int:
    """Peak bytes the step holds above what was allocated when it started.

    On CUDA this is `torch.cuda.max_memory_allocated`. On CPU it is the running sum of the CPU allocator's
    allocation and free events that the PyTorch profiler records (`profile_memory=True`): every tensor the step
    allocates (activations, saved tensors, gradients, temporaries), not the process RSS, which the allocator's
    caching and the other processes of a shared machine make meaningless at this scale.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        job()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        job()
    events = sorted((event.start_ns(), event.nbytes()) for event in profiler.profiler.kineto_results.events()
                    if event.name() == "[memory]" and event.device_type() == DeviceType.CPU)
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def resident_bytes(*modules: nn.Module) -> int:
    """Bytes of the distinct tensor storages behind the modules' parameters and buffers: weights shared between
    modules (or tied inside one) count once."""
    storages = {}
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            storage = tensor.untyped_storage()
            storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())
