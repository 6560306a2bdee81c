"""Reading the CUDA path's environment switches (GPUCONV_CONV_ALGO, GPUCONV_POISON, GPUCONV_UNVERIFIED, ...).

They are read at every call, so that tests and benchmarks can flip them, and a call reads up to 16 of them:
``os.environ.get`` costs about 0.6 us a read (it encodes the key and goes through the Mapping protocol),
about 10 us of a conv2d_backward. ``get`` reads the same mapping's own dict with the key encoded once,
about 0.04 us. ``os.environ`` keeps that dict (``_data``) in step with every assignment and deletion,
``monkeypatch.setenv`` included; where an interpreter lacks it, ``get`` falls back to ``os.environ.get``.
"""

from __future__ import annotations

import os

_environ = os.environ
_data = getattr(_environ, "_data", None)
_encode = getattr(_environ, "encodekey", None)
_decode = getattr(_environ, "decodevalue", None)
_FAST = isinstance(_data, dict) and callable(_encode) and callable(_decode)
_keys: dict = {}  # name -> its encoded form, the key of os.environ._data


def get(name: str) -> str:
    """The value of environment variable ``name``, or "" when it is unset."""
    if not _FAST:
        return _environ.get(name, "")
    key = _keys.get(name)
    if key is None:
        key = _keys[name] = _encode(name)
    raw = _data.get(key)
    return "" if raw is None else _decode(raw)
