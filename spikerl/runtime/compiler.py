"""torch.compile with a way back: a function that fails to compile (no C++ compiler, an unsupported
platform, dynamo's recompile limit) warns once and runs eagerly from then on, instead of ending the run.
Errors of the computation itself (a shape error, running out of memory) are raised as they are.

MODES are what `compile_mode` may ask for: torch.compile's own modes. `reduce-overhead` records CUDA
graphs, so it needs a CUDA device (config validation refuses it elsewhere).
"""

from __future__ import annotations

import gc
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable

import torch

MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead",)


def use_cache_dir(folder: str | None) -> str | None:
    """Keep torch.compile's artifacts (Inductor's FX graph and AOTAutograd caches, its kernels) in `folder`
    (`~` expanded), so that later runs on this machine, or on every node that sees the folder, load
    them instead of compiling again: torch's TORCHINDUCTOR_CACHE_DIR, set for this process and the ranks
    it starts. None leaves torch's default (the machine's temporary folder). A folder that cannot be made
    or written warns once and leaves the default: a cache never stops a run. Returns the folder used."""
    if folder is None:
        return None
    path = os.path.abspath(os.path.expanduser(str(folder)))
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        if path not in _UNUSABLE:
            _UNUSABLE.add(path)
            warnings.warn(f"compile_cache={folder}: cannot write there ({exc.strerror or exc}); compiling with "
                          "torch's default cache in the temporary folder", stacklevel=2)
        return None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return path


_UNUSABLE: set[str] = set()  # cache folders already warned about
_INSTANCES: weakref.WeakSet = weakref.WeakSet()  # every CompiledOrEager alive, for `failures`


# torch's own compile timers (`torch._dynamo.utils.compilation_time_metrics`, torch 2.13): dynamo's compile
# calls (tracing, the forward graphs, loading cached ones), and AOT autograd's lazy backward compile, which
# runs at a graph's first backward call outside dynamo's (4 of 29 s for a small MLP from an empty cache)
COMPILE_TIMERS = ("_compile.compile_inner", "backward._backward_impl")


def compile_seconds() -> float:
    """Seconds torch.compile has spent compiling in this process so far, forward and backward graphs (the
    COMPILE_TIMERS); 0.0 where this torch keeps no such timers."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:
        return 0.0
    return float(sum(sum(compilation_time_metrics.get(key, ())) for key in COMPILE_TIMERS))


def is_compile_failure(exc: BaseException) -> bool:
    """Dynamo's and Inductor's own errors (tracing, lowering, the C++ build, the recompile limit); not
    errors of the computation, such as running out of memory."""
    from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException
    from torch._inductor.exc import CppCompileError

    return isinstance(exc, (TorchDynamoException, CppCompileError, FailOnRecompileLimitHit))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def failures() -> dict[str, str]:
    """What runs eagerly in this process because compiling it failed: name -> the first line of why."""
    gc.collect()  # a finished job's learner left in a reference cycle is not one of this job's
    return {kernel.name: kernel.failed for kernel in list(_INSTANCES) if kernel.failed}


class CompiledOrEager:
    """`fn` through torch.compile(fullgraph, mode); eager once compiling it has failed. torch.compile
    caches graphs by `fn`'s code, so every instance over the same `fn` shares them (a multirun's jobs
    reuse the graphs of networks of the same structure)."""

    def __init__(self, fn: Callable, *, fullgraph: bool = True, mode: str = "default", dynamic: bool = False,
                 unbacked: tuple[int, int] | None = None, name: str | None = None):
        """Shapes and constants are static by default (a training step has one batch size per run;
        dynamo's automatic dynamic shapes would also turn the neuron constants, which differ between
        networks, into symbols after a second network compiles). `unbacked=(i, d)` makes dimension d
        of positional argument i symbolic without a specialisation for size 1: one graph then serves
        every batch size, batch 1 included. `name` is how the warning calls `fn`."""
        if mode not in MODES:
            raise ValueError(f"compile_mode must be one of {MODES}, got {mode!r}")
        self.fn, self.name, self.unbacked = fn, name or fn.__name__, unbacked
        self.compiled = torch.compile(fn, fullgraph=fullgraph, dynamic=dynamic,
                                      mode=None if mode == "default" else mode)
        self.failed: str | None = None  # why compiling failed; then `fn` runs eagerly
        _INSTANCES.add(self)

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.fn(*args, **kwargs)
        try:
            if self.unbacked is not None:
                torch._dynamo.decorators.mark_unbacked(args[self.unbacked[0]], self.unbacked[1])
            return self.compiled(*args, **kwargs)
        except Exception as exc:
            if not is_compile_failure(exc):
                raise
            result = self.fn(*args, **kwargs)  # raises the computation's own error, if that was the cause
            self.failed = first_line(exc)
            warnings.warn(f"compile: torch.compile of {self.name} failed ({self.failed}); it runs eagerly",
                          stacklevel=2)
            return result
