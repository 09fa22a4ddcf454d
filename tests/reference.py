"""PopSAN's published equations written out directly, as the reference the tests compare against."""

import torch


class _RectSpike(torch.autograd.Function):
    """s = v > 0.5; pseudo-gradient 1 where |v - 0.5| < 0.5."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0.5).float()

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * ((v - 0.5).abs() < 0.5).float()


popsan_spike = _RectSpike.apply


def popsan_neuron_step(c, v, s, current):
    """One step of PopSAN's current-based LIF: returns the new (c, v, s)."""
    c = 0.5 * c + current
    v = 0.75 * v * (1.0 - s) + c
    return c, v, popsan_spike(v)


def popsan_neuron_reference(current: torch.Tensor) -> torch.Tensor:
    """Spikes [T, B, N] of one layer driven by input current [T, B, N] from zero state."""
    c = v = s = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        c, v, s = popsan_neuron_step(c, v, s, current[t])
        out.append(s)
    return torch.stack(out)


def relative_error(theirs: torch.Tensor, ours: torch.Tensor) -> float:
    """The largest difference relative to the reference's largest magnitude (how gradients are compared);
    `ours` is compared in the reference's shape (a published layer may keep its weights in another)."""
    return ((theirs - ours.reshape(theirs.shape)).abs().max() / theirs.abs().max().clamp(min=1e-6)).item()


def assert_same(found: dict[str, float], what: str) -> None:
    """Every difference `found` within float32 rounding: gradients ("grad ..." keys, relative) to 1e-4,
    actions, spikes and membranes (absolute) to 1e-5."""
    bad = {k: v for k, v in found.items() if v > (1e-4 if k.startswith("grad") else 1e-5)}
    assert not bad, f"differs from {what}: {bad}"


_PUBLISHED_FOLDERS: set[str] = set()


def import_published(folder, name: str):
    """Module `name` of a published repository's `folder` (a checkout the tests are pointed at), imported
    as its own scripts import it: with the folder first on the path. Published repositories name their
    modules alike (Proxy Target's and CaRe-BN's both have SAN.py, actor_critic.py, utils.py), so modules
    another one's folder left in sys.modules are dropped first: in one test process each gets its own."""
    import os
    import sys

    folder = os.path.realpath(folder)
    others = _PUBLISHED_FOLDERS - {folder}
    for key, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if where and os.path.dirname(os.path.realpath(where)) in others:
            del sys.modules[key]
    _PUBLISHED_FOLDERS.add(folder)
    sys.path.insert(0, folder)
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


class StepRecorder:
    """While installed (with a pytest monkeypatch): the loss of every backward pass, and every named
    parameter's gradient at each optimizer step that holds it (`grads`: name -> one tensor per step).
    `names` maps id(parameter) -> name; it may be filled after installing."""

    def __init__(self, monkeypatch, names: dict[int, str]):
        self.losses, self.grads = [], {}
        real_backward, real_step = torch.Tensor.backward, torch.optim.Adam.step

        def backward(tensor, *args, **kwargs):
            self.losses.append(tensor.detach().clone())
            return real_backward(tensor, *args, **kwargs)

        def step(opt, *args, **kwargs):
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None and id(p) in names:
                        self.grads.setdefault(names[id(p)], []).append(p.grad.detach().clone())
            return real_step(opt, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "backward", backward)
        monkeypatch.setattr(torch.optim.Adam, "step", step)
