"""CPU stand-ins for the GPU, plugged into gpuconv's CUDA path through its seams (``gpuconv._cuda._runtime``
for the device, ``gpuconv._cuda._config`` for tunables): no sys.modules swaps, no patched private names."""
