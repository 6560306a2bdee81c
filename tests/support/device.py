"""A stand-in device for ``gpuconv._cuda._runtime``: fixed properties and a timer the test controls."""

from __future__ import annotations


class FakeDevice:
    """Device 0 with an H100's properties by default; ``elapsed_ms(run)`` runs ``run`` and returns what
    ``timer(run)`` says (default 1 ms)."""

    def __init__(self, compute_capability: int = 90, sm_count: int = 132, smem_optin: int = 232448,
                 timer=None, device_id: int = 0):
        self._properties = (compute_capability, sm_count, smem_optin)
        self._timer = timer
        self._id = device_id

    def device_id(self) -> int:
        return self._id

    def properties(self, device_id: int) -> tuple:
        return self._properties

    def elapsed_ms(self, run) -> float:
        if self._timer is not None:
            return self._timer(run)
        run()
        return 1.0
