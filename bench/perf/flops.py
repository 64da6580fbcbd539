"""FLOPs of convolutions and matrix products: counted by `torch.utils.flop_counter` on the
operations a measurement runs (`count_flops`, `batch_flops`), by hand for one convolution
(`conv2d_flops`), and read off a flow's architecture (`analytic_flops`)."""

from __future__ import annotations

from collections.abc import Callable


def conv2d_flops(batch: int, cin: int, cout: int, kernel, out_hw, groups: int = 1) -> int:
    """Hand count of one forward 2-D convolution: 2 · B · Cout · Hout · Wout · (Cin/g) · kh · kw
    (bias additions not counted, as `FlopCounterMode` does)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    oh, ow = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    return 2 * batch * cout * oh * ow * (cin // groups) * kh * kw


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the convolutions and matrix products `fn` runs (forward and any backward it
    calls), counted by `torch.utils.flop_counter.FlopCounterMode`."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def batch_flops(make: Callable[[int], Callable[[], object]], batch: int) -> float:
    """FLOPs of one repetition at `batch`, counted at batches 1 and 2 and extrapolated (every
    count here is affine in the batch), so counting costs two tiny passes."""
    f1, f2 = count_flops(make(1)), count_flops(make(2))
    return float(f1 + (f2 - f1) * (batch - 1))


def analytic_flops(flow) -> dict:
    """Convolution FLOPs per image of one generation (z → x) read off the architecture alone:
    each coupling network's two convolutions and, for glow, each 1×1 convolution. A solver
    iteration adds the input-gradient convolutions of the backward pass (×2 in all); a training
    step adds input and weight gradients (×3)."""
    from bench.flows.layers import AffineCoupling, InvConv1x1

    total = 0
    s = flow.input_shape[1]
    for scale in flow.scales:
        s //= 2  # every scale starts with a squeeze
        for layer in scale.layers:
            if isinstance(layer, AffineCoupling):
                net = layer.net
                for conv, insize in ((net.conv1, s), (net.conv2, s)):
                    k, p = conv.kernel_size[0], conv.padding[0]
                    out = insize + 2 * p - k + 1
                    total += conv2d_flops(1, conv.in_channels, conv.out_channels, k, out)
            elif isinstance(layer, InvConv1x1):
                total += conv2d_flops(1, layer.channels, layer.channels, 1, s)
    return {"generation": total, "solver": 2 * total, "training": 3 * total}
