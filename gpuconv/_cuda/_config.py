"""The CUDA path's configuration: one snapshot of its environment switches and tunables.

Every decision below the public functions (which variant runs a pass, whether outputs are poisoned, which
experimental kernels are allowed) reads one ``Config``, taken from the environment the first time the CUDA
path runs and kept until ``refresh()`` (tests and benchmarks that flip a variable call it; the test suite's
``monkeypatch`` does so on every GPUCONV_* change, tests/conftest.py). Reading the six variables costs about
4 us, more than a small convolution's whole Python share; a cached snapshot costs a global lookup.

    GPUCONV_CONV_ALGO      auto | autotune | direct | im2col | implicit_gemm | depthwise
    GPUCONV_ALLOW_TF32     1: float32 implicit GEMMs may use TF32 tensor cores
    GPUCONV_IGEMM_REFERENCE  1: float32 implicit GEMM runs the unpipelined reference kernel
    GPUCONV_POISON         1: every kernel output is filled with NaN before its kernel runs
    GPUCONV_UNVERIFIED     all | 1 | name,...: experimental variants allowed (gpuconv/_cuda/experimental/)
    GPUCONV_CHECK_INDICES  1: max_pool2d_backward checks its indices' range on the host for CuPy arrays too
                           (a host synchronisation; off by default so that the op can be captured in a graph)

Tunables are sizes the code would otherwise hard-code; tests shrink them with ``override`` to reach rare
branches on small tensors, instead of patching module constants.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from .experimental import FEATURES

ALGORITHMS = ("direct", "im2col", "implicit_gemm", "depthwise")
RULES = ("auto", "autotune") + ALGORITHMS
ALGO_ENV = "GPUCONV_CONV_ALGO"
UNVERIFIED_ENV = "GPUCONV_UNVERIFIED"


@dataclasses.dataclass(frozen=True)
class Config:
    conv_algo: str = "auto"
    allow_tf32: bool = False
    igemm_reference: bool = False
    poison: bool = False
    unverified: frozenset = frozenset()  # names of FEATURES turned on
    check_indices: bool = False
    # Tunables.
    workspace_bytes: int = 256 << 20  # cap on im2col's matrix (and gemm_1x1's wgrad products) per batch chunk
    bias_split_bytes: int = 128 * 1024  # most bytes of gy one bias_grad block sums
    max_keys_per_chunk: int = 1 << 27  # max_pool2d backward's sort: outputs per chunk of planes
    index_limit: int = (1 << 31) - 1  # pooling: the largest index the 32-bit kernel variants take
    sm_count: int = 0  # 0: the device's; else the SM count the tile and split rules assume
    compute_capability: int = 0  # 0: the device's; else the one supports() assumes (e.g. 90)
    smem_limit: int = 0  # 0: the device's opt-in limit; else the most dynamic shared memory a block may take
    im2col_gemm_form: str = "auto"  # im2col's products: "auto", or "per_group" / "batched" for every dtype
    depthwise_specialised: bool = True  # False: every depthwise filter takes the generic <T, 0, 0> kernels
    depthwise_wgrad_blocks: int = 4096  # the depthwise wgrad's target block count (chunks per channel)
    depthwise_v2_wgrad_blocks: int = 4096  # the same for the experimental version 2
    nhwc_gemm_rate: float = 450e12  # FLOP/s the NHWC wgrad split rule assumes (unmeasured: an H100 estimate)
    nhwc_workspace_rate: float = 2.5e12  # bytes/s of the NHWC wgrad split workspace (unmeasured estimate)

    def allows(self, feature) -> bool:
        """Whether a variant of this experimental feature may run (None: a verified variant, always)."""
        return feature is None or feature in self.unverified


def parse_unverified(raw: str) -> frozenset:
    """The features a GPUCONV_UNVERIFIED value turns on; unknown names raise, so a typo cannot silently
    measure the old kernels."""
    raw = raw.strip()
    if not raw or raw == "0":
        return frozenset()
    if raw in ("1", "all"):
        return frozenset(FEATURES)
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(names - FEATURES.keys())
    if unknown:
        raise ValueError(f"{UNVERIFIED_ENV}={raw!r} names unknown features {unknown}; known: {sorted(FEATURES)} "
                         f"or 'all'")
    return names


def from_environment(environ=os.environ, **tunables) -> Config:
    """A Config from environment variables (and tunables given as keywords)."""
    raw_algo = environ.get(ALGO_ENV, "")
    algo = raw_algo.strip().lower() or "auto"
    if algo not in RULES:
        raise ValueError(f"{ALGO_ENV} must be one of {', '.join(RULES)}, but got {raw_algo!r}")
    return Config(conv_algo=algo, allow_tf32=environ.get("GPUCONV_ALLOW_TF32") == "1",
                  igemm_reference=environ.get("GPUCONV_IGEMM_REFERENCE") == "1",
                  poison=environ.get("GPUCONV_POISON") == "1",
                  unverified=parse_unverified(environ.get(UNVERIFIED_ENV, "")),
                  check_indices=environ.get("GPUCONV_CHECK_INDICES") == "1", **tunables)


_current: list = [None]
_tunables: dict = {}


def current() -> Config:
    """The snapshot every call of the CUDA path reads."""
    config = _current[0]
    return config if config is not None else refresh()


def refresh() -> Config:
    """Reads the environment again (after a change to a GPUCONV_* variable)."""
    config = _current[0] = from_environment(**_tunables)
    return config


def set_tunables(tunables: dict) -> dict:
    """Replaces the overridden tunables (fields of Config other than the switches; {} restores every
    default) and returns the previous ones."""
    saved = dict(_tunables)
    _tunables.clear()
    _tunables.update(tunables)
    refresh()
    return saved


@contextlib.contextmanager
def override(**tunables):
    """Runs the body with these tunables changed."""
    saved = set_tunables({**_tunables, **tunables})
    try:
        yield current()
    finally:
        set_tunables(saved)
