"""The host side of an exported actor: what runs beside the chip, as PopSAN kept it on Loihi.

Four parts, each the actor's own object, so the host computes what the actor computes by construction:
the observation normaliser (frozen at its statistics), the encoder, the decoder's host part (the rate
read-out, or the read-out of membranes the chip computed; then tanh) and the action scaling. A part
describes itself with `host_state() -> (settings, arrays)` and is rebuilt with its class's
`from_host(settings, arrays)`; `host_ops(timesteps)` counts its float operations per action. A bundle
names each part's class beside its settings (bundle.json) and keeps its arrays in host.npz as
`<part>_<array>`, so a new encoder or decoder needs nothing here.
"""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import get_class

from ..errors import BAD_INPUT, SpikeRLError

PARTS = ("normalizer", "encoder", "decoder", "action")


class HostError(SpikeRLError, ValueError):
    """A host description that names no part SpikeRL can rebuild."""

    exit_code = BAD_INPUT


def describe(part) -> tuple[dict, dict[str, np.ndarray]]:
    """A part's settings with its class's import path, and its arrays."""
    settings, arrays = part.host_state()
    cls = type(part)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", **settings}, arrays


def rebuild(settings: dict, arrays: dict[str, np.ndarray]):
    path = str(settings.get("class"))
    try:
        cls = get_class(path)
    except Exception:
        cls = None
    if cls is None or not hasattr(cls, "from_host"):
        raise HostError(f"the host part {path!r} is not a class SpikeRL can rebuild")
    return cls.from_host(settings, arrays)


class Host:
    """Raw observation -> normalised -> encoder input [T, B, N] for the graph; the graph's output -> action
    in [-1, 1] -> the env's action."""

    def __init__(self, timesteps: int, normalizer, encoder, decoder, action):
        self.timesteps = int(timesteps)
        self.normalizer, self.encoder, self.decoder, self.action = normalizer, encoder, decoder, action

    @classmethod
    def of(cls, actor, normalizer, action) -> Host:
        """The host of a trained actor, its normaliser and its env's ActionScaler."""
        return cls(actor.timesteps, normalizer, actor.encoder, actor.host_decoder(), action)

    @classmethod
    def read(cls, config: dict, arrays: dict[str, np.ndarray]) -> Host:
        """The host that `config` and `arrays` (as `state` gave them) describe."""
        parts = {name: rebuild(config[name], {key[len(name) + 1:]: value for key, value in arrays.items()
                                              if key.startswith(f"{name}_")})
                 for name in PARTS}
        return cls(config["timesteps"], **parts)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(bundle.json's host section, host.npz's arrays)."""
        config, arrays = {"timesteps": self.timesteps}, {}
        for name in PARTS:
            config[name], own = describe(getattr(self, name))
            arrays.update({f"{name}_{key}": np.asarray(value) for key, value in own.items()})
        return config, arrays

    @property
    def deterministic(self) -> bool:
        return bool(getattr(self.encoder, "deterministic", True))

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return self.normalizer(raw)

    @torch.inference_mode()
    def encode(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encoder(obs, self.timesteps, generator=generator)

    @torch.inference_mode()
    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return self.decoder(output)

    def scale_action(self, action: np.ndarray) -> np.ndarray:
        return self.action(action)

    def ops(self) -> dict:
        """Float operations per action on the host: the normaliser's, the encoder's and the decoder's
        (exp, tanh and random numbers counted but not priced; the action scaling is the env's)."""
        counts = [part.host_ops(self.timesteps) for part in (self.normalizer, self.encoder, self.decoder)]
        return {key: sum(c[key] for c in counts) for key in counts[0]}
