"""Deblurring (PROTOCOL §4): ``A`` = 3×3 average pooling, stride 1, zero padding 1 counted in the
average, applied in model space to the dequantized clean image; no noise. The paper's Figure 4."""

from __future__ import annotations

import torch.nn.functional as F

from bench import config
from bench.plugins import register
from bench.tasks.base import Task


class Deblurring(Task):
    """3×3 average pooling, stride 1, zero padding counted in the average; noiseless.

    The operator is a 'same' correlation with the constant 1/9 kernel, which is symmetric, so
    it is its own adjoint."""

    name = "deblurring"
    label = "Deblurring"
    figure = 4
    default = True
    linear = True
    kernel = config.BLUR_KERNEL

    def A(self, x):
        return F.avg_pool2d(
            x, self.kernel, stride=1, padding=self.kernel // 2, count_include_pad=True
        )

    def adjoint(self, y):
        return self.A(y)


register(Deblurring)
