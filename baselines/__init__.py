"""The baselines of Table 1 (PROTOCOL §5), one module each.

This folder is installed as the import package ``bench_baselines`` (see pyproject.toml): a
top-level package called ``baselines`` collides with an unrelated, widely installed one.

- ``csgm``: CSGM (Bora et al.), min ‖A G(z) − y‖² + γ‖z‖², z0 ~ N(0, I);
- ``glowip``: GlowIP (Asim et al.), the same objective from z0 = 0;
- ``map``: MAP (Whang et al.), 1/(2σ²)‖G(z) − y‖² − β log p(G(z)), denoising only
  (``map-all``: every task; ``map-released``: the released code's sign defect);
- ``bm3d``: BM3D on the noisy image (denoising only; no flow).

Each module registers its method on import; `bench.plugins.BUILTIN_MODULES` imports them, in
Table 1's row order, the way it loads a plugin.
"""
