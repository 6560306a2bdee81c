"""A progress bar: tqdm when it is installed, else one line per step on stderr."""

from __future__ import annotations

import sys
import time


def bar(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, unit="pass", dynamic_ncols=True, file=sys.stderr)


class _PlainBar:
    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.perf_counter()
        self.postfix = ""

    def set_postfix_str(self, s):
        self.postfix = s

    def update(self, k=1):
        self.n += k
        print(f"{self.desc}: {self.n}/{self.total} [{time.perf_counter() - self.t0:6.1f}s] {self.postfix}",
              file=sys.stderr, flush=True)

    def write(self, s):
        print(s, file=sys.stderr, flush=True)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
