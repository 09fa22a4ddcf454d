"""The compile cache (`compile_cache`, spikerl.runtime.compiler.use_cache_dir): compiled graphs kept in a
folder that outlives the machine's temporary one are loaded by the next process instead of compiled
again; an unwritable folder, another torch version's entries or corrupt ones never stop a run."""

import os
import subprocess
import sys

import pytest

from spikerl.config import compose, validate
from spikerl.runtime.compiler import use_cache_dir

# one process's compile of a small function through the cache folder argv[1]: its result and what the
# FX graph cache did
COMPILE_ONCE = """
import sys, torch
if len(sys.argv) > 2:  # as another torch would: its source hash (part of every cache key) and version differ
    import torch._inductor.codecache as codecache
    codecache.torch_key = lambda: b"another torch build"
    torch.__version__ = "2.99.0"
from torch._dynamo.utils import counters
from spikerl.runtime.compiler import CompiledOrEager, use_cache_dir
assert use_cache_dir(sys.argv[1]) == sys.argv[1]
f = CompiledOrEager(lambda x: (x.sin() * 2 + x.cos()).sum(), name="f")
print(round(float(f(torch.arange(6.0))), 5), counters["inductor"]["fxgraph_cache_hit"])
"""


def compile_once(folder, another_torch=False):
    argv = [sys.executable, "-c", COMPILE_ONCE, str(folder), *(["another"] if another_torch else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    value, hits = proc.stdout.split()
    return float(value), int(hits)


def test_a_second_process_loads_the_compiled_graph_and_another_torchs_or_corrupt_entries_compile_again(tmp_path):
    cache = tmp_path / "cache"
    first, hits = compile_once(cache)
    assert hits == 0 and any(cache.rglob("*.so"))  # compiled, and kept in the folder
    assert compile_once(cache) == (first, 1)  # loaded, not compiled again
    assert compile_once(cache, another_torch=True) == (first, 0)  # another torch's entries: compiled afresh
    for entry in (p for p in cache.rglob("*") if p.is_file()):
        entry.write_bytes(b"garbage")
    value, hits = compile_once(cache)  # torch logs that it cannot load them, then compiles afresh
    assert value == pytest.approx(first, abs=1e-4) and hits == 0


def test_an_unwritable_cache_folder_warns_once_and_leaves_torchs_default(monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/unchanged")
    with pytest.warns(UserWarning, match=r"compile_cache=/proc/spikerl-cache: cannot write there"):
        assert use_cache_dir("/proc/spikerl-cache") is None
    assert use_cache_dir("/proc/spikerl-cache") is None  # no second warning (pytest would fail on none above)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/tmp/unchanged" and use_cache_dir(None) is None


def test_the_cache_folder_is_a_per_user_default_an_environment_variable_or_none(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKERL_COMPILE_CACHE", raising=False)
    assert validate(compose([])).compile_cache == os.path.join("~", ".cache", "spikerl", "compile")
    monkeypatch.setenv("SPIKERL_COMPILE_CACHE", str(tmp_path / "shared"))
    assert validate(compose([])).compile_cache == str(tmp_path / "shared")
    assert validate(compose(["compile_cache=null"])).compile_cache is None
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/before")
    assert use_cache_dir("~/x-spikerl-test") == os.path.expanduser("~/x-spikerl-test")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == os.path.expanduser("~/x-spikerl-test")
    os.rmdir(os.path.expanduser("~/x-spikerl-test"))


def test_compile_seconds_counts_the_lazy_backward_compile(monkeypatch):
    import torch._dynamo.utils as dynamo_utils

    from spikerl.runtime.compiler import compile_seconds

    monkeypatch.setattr(dynamo_utils, "compilation_time_metrics",
                        {"_compile.compile_inner": [3.0, 1.0], "backward._backward_impl": [2.0],
                         "compile_file": [9.0]})  # nested in the others: not added again
    assert compile_seconds() == 6.0


# a forward and backward compiled in one process from an empty cache: compile_seconds() before, after the
# forward's first call and after the backward's, and how long that first backward call took
FORWARD_BACKWARD = """
import sys, time, torch
from spikerl.runtime.compiler import CompiledOrEager, compile_seconds, use_cache_dir
use_cache_dir(sys.argv[1])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
loss_of = CompiledOrEager(lambda x: net(x).pow(2).mean(), name="loss")
before = compile_seconds()
loss = loss_of(torch.randn(8, 16))
after_forward = compile_seconds()
start = time.perf_counter()
loss.backward()
print(before, after_forward, compile_seconds(), time.perf_counter() - start)
"""


@pytest.mark.slow
def test_the_first_backward_calls_compile_time_is_counted(tmp_path):
    proc = subprocess.run([sys.executable, "-c", FORWARD_BACKWARD, str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after_forward, after_backward, backward_call = map(float, proc.stdout.split())
    assert after_forward > before
    # the backward graph compiles at its first call; that call is nearly all compiling
    assert backward_call > 0.5 and after_backward - after_forward >= 0.8 * backward_call
