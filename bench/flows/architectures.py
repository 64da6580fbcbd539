"""What a flow architecture is (PROTOCOL §2 `coupling`, PROTOCOL §3 `glow`, or one a user
registers), and the registry ``--arch`` chooses from. The built-ins are
:mod:`bench.flows.coupling` and :mod:`bench.flows.glow`; :mod:`bench.flows.multiscale`
assembles a flow from one."""

from __future__ import annotations

from bench.flows.base import FlowLayer
from bench.registry import Registry


class FlowArchitecture:
    """The flow steps of a multi-scale flow (:class:`~bench.flows.multiscale.MultiScaleFlow`:
    per scale a squeeze, then `steps[i]` flow steps, then optionally half the channels split
    off to the latent).

    Class attributes:

    - `name`: what ``--arch`` and checkpoints (``arch_config['arch']``) call it;
    - `label`: one line saying what it is, for reports;
    - `levels`: the number of scales of the paper's flow (``len(steps)``);
    - `steps`: flow steps per scale, `splits`: whether half the channels leave after each
      scale; the defaults of ``build_flow`` (PROTOCOL §2, §3).

    :meth:`step` returns the layers of one flow step. The layers, their order and their
    constructor arguments fix the parameter names and the random initialisation of a flow:
    changing them makes existing checkpoints of the architecture unloadable.
    """

    name: str = ""
    label: str = ""
    levels: int = 0
    steps: tuple[int, ...] = ()
    splits: tuple[bool, ...] = ()

    def step(
        self, channels: int, hidden: int, size: int, index: int, inv_mode: str = "cached"
    ) -> list[FlowLayer]:
        """The layers of flow step `index` (counted from 0 across all scales) acting on maps of
        `channels` × `size` × `size`; `hidden` is the coupling networks' width and `inv_mode`
        the inverse mode of any invertible 1×1 convolution (``bench.flows.INV_MODES``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<flow architecture {self.name!r}: {self.label}>"


FLOWS: Registry[FlowArchitecture] = Registry("flow architecture", FlowArchitecture, "--arch")
# the names --arch accepts (the registry itself: `in`, iteration and ", ".join work on it)
ARCHITECTURES = FLOWS


def get_architecture(arch: str | FlowArchitecture) -> FlowArchitecture:
    """The registered architecture called `arch` (an instance is returned as is); ValueError
    naming the choices."""
    if isinstance(arch, FlowArchitecture):
        return arch
    if not isinstance(arch, str) or arch not in FLOWS:
        raise ValueError(f"unknown architecture {arch!r}: choose {', '.join(FLOWS)}")
    return FLOWS[arch]
