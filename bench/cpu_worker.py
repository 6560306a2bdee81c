"""A timing worker for bench_cpu.py: one process per library, so that each is timed where no other
library's threads exist, as a user runs it.

    python bench/cpu_worker.py gpuconv|torch THREADS      (started by Worker below, not by hand)

The `gpuconv` worker imports gpuconv and numpy and never torch; the `torch` worker imports torch and
numpy and never gpuconv. Each runs the same calls as passes.py (same arguments, same aten ops for the
backward passes), built here from a plain description of the layer because passes.py imports both
libraries. The parent checks every result against a float64 reference before timing, and also checks the
first result each worker computes, so these calls cannot drift from the checked ones unnoticed.

Protocol: requests and replies are pickles on the stdin / (original) stdout pipes; anything the libraries
print goes to stderr. Requests are dicts with an "op": "load" (input sets of a layer, NumPy arrays),
"time" (one pass: warm-up, then timing.time_cpu), "memory" (tracemalloc peak of two gpuconv calls),
"exit". Replies are dicts, with "error" and "traceback" when the request failed.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

MIB = 2 ** 20


# ------------------------------------------------------------------------------------------- the calls


def _conv_args(spec):
    return dict(stride=spec["stride"], padding=spec["padding"], dilation=spec["dilation"], groups=spec["groups"])


def _tconv_args(spec):
    return dict(stride=spec["stride"], padding=spec["padding"], output_padding=spec["output_padding"],
                groups=spec["groups"], dilation=spec["dilation"])


_MASK_INDEX = {"dgrad": 0, "wgrad": 1}


def gpuconv_call(spec):
    """The gpuconv call of one (layer, pass), as in passes.py; takes an input set of NumPy arrays."""
    import gpuconv

    kind, p = spec["kind"], spec["pass"]
    k, st, pad = spec["kernel"], spec["stride"], spec["padding"]
    if kind in ("conv", "tconv"):
        a = _conv_args(spec) if kind == "conv" else _tconv_args(spec)
        if p == "fprop":
            f = gpuconv.conv2d if kind == "conv" else gpuconv.conv_transpose2d
            return lambda s: f(s["x"], s["w"], s.get("b"), **a)
        i = _MASK_INDEX[p]
        mask = tuple(j == i for j in range(3))
        f = gpuconv.conv2d_backward if kind == "conv" else gpuconv.conv_transpose2d_backward
        return lambda s: f(s["gy"], s["x"], s["w"], output_mask=mask, **a)[i]
    if kind == "maxpool":
        if p == "fwd":
            return lambda s: gpuconv.max_pool2d(s["x"], k, st, pad, return_indices=True)
        return lambda s: gpuconv.max_pool2d_backward(s["gy"], s["idx"], tuple(s["x"].shape))
    if p == "fwd":
        return lambda s: gpuconv.avg_pool2d(s["x"], k, st, pad)
    return lambda s: gpuconv.avg_pool2d_backward(s["gy"], tuple(s["x"].shape), k, st, pad)


def torch_call(spec):
    """PyTorch's call of one (layer, pass), as in passes.py; takes an input set of torch tensors."""
    import torch
    import torch.nn.functional as F

    aten = torch.ops.aten
    kind, p = spec["kind"], spec["pass"]
    k, st, pad = spec["kernel"], spec["stride"], spec["padding"]
    if kind in ("conv", "tconv"):
        if p == "fprop":
            if kind == "conv":
                a = _conv_args(spec)
                return lambda s: F.conv2d(s["x"], s["w"], s.get("b"), **a)
            a = _tconv_args(spec)
            return lambda s: F.conv_transpose2d(s["x"], s["w"], s.get("b"), **a)
        i = _MASK_INDEX[p]
        mask = [j == i for j in range(3)]
        transposed = kind == "tconv"
        out_pad = list(spec["output_padding"]) if transposed else [0, 0]
        return lambda s: aten.convolution_backward(s["gy"], s["x"], s["w"], None, list(st), list(pad),
                                                   list(spec["dilation"]), transposed, out_pad,
                                                   spec["groups"], mask)[i]
    if kind == "maxpool":
        if p == "fwd":
            return lambda s: F.max_pool2d(s["x"], k, st, pad, return_indices=True)
        return lambda s: aten.max_pool2d_with_indices_backward(s["gy"], s["x"], list(k), list(st), list(pad),
                                                               [1, 1], False, s["idx"])
    if p == "fwd":
        return lambda s: F.avg_pool2d(s["x"], k, st, pad)
    return lambda s: aten.avg_pool2d_backward(s["gy"], s["x"], list(k), list(st), list(pad), False, True, None)


# ------------------------------------------------------------------------------------------ the worker


class _Side:
    """What differs between the two workers: the library, its thread setting, array conversions."""

    def __init__(self, name, threads):
        self.name = name
        if name == "torch":
            import numpy  # noqa: F401  (data arrives as NumPy arrays)
            import torch

            torch.set_num_threads(threads)
            self._torch = torch
            self.build = torch_call
        else:
            import numpy  # noqa: F401

            import gpuconv  # noqa: F401

            _limit_blas(threads)
            self.build = gpuconv_call

    def inputs(self, s):
        """An input set in memory of the library's own allocator, as a user would have it (arrays out of a
        pickle sit at arbitrary offsets in its buffer, unaligned, which slows some kernels)."""
        if self.name == "torch":
            import interop  # this worker has torch already; interop crosses bfloat16 as int16 bits

            return {k: interop.from_numpy(v).clone() for k, v in s.items()}
        return {k: v.copy() for k, v in s.items()}

    def output(self, r):
        """A result as NumPy arrays (for the pickle back to the parent)."""
        if isinstance(r, tuple):
            return tuple(self.output(x) for x in r)
        if self.name == "torch":
            import interop

            return interop.numpy_view(r)
        return r

    def info(self, threads):
        out = {"pid": os.getpid(), "threads_asked": threads,
               "torch_imported": "torch" in sys.modules, "gpuconv_imported": "gpuconv" in sys.modules,
               "env": {k: v for k, v in os.environ.items()
                       if k.startswith(("OMP_", "OPENBLAS_", "MKL_", "GPUCONV_", "KMP_", "GOMP_"))}}
        if self.name == "torch":
            t = self._torch
            out.update({"torch_num_threads": t.get_num_threads(),
                        "torch_num_interop_threads": t.get_num_interop_threads(),
                        "torch_parallel_info": t.__config__.parallel_info()})
        else:
            from gpuconv._numpy import _parallel

            out["gpuconv_threads"] = _parallel.workers()
        try:
            from threadpoolctl import threadpool_info

            out["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "filepath")}
                                  for p in threadpool_info()]
        except ImportError:
            pass
        return out


def _limit_blas(threads):
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass


def time_pass(side, sets, spec, warmup, budget_s, min_reps, max_reps):
    """Warm-up calls (the first result goes back for the parent's check), then timing.time_cpu."""
    import timing

    fn = side.build(spec)
    first = fn(sets[0])
    for i in range(1, warmup):
        fn(sets[i % len(sets)])
    times = timing.time_cpu(fn, sets, warmup=0, budget_s=budget_s, min_reps=min_reps, max_reps=max_reps)
    return {"times": times, "first": side.output(first)}


def memory(s, conv_args):
    """tracemalloc's peak during gpuconv.conv2d and during gpuconv.conv2d_backward on one input set."""
    import tracemalloc

    import gpuconv

    io_bytes = s["x"].nbytes + s["gy"].nbytes
    result = {}
    for name, call in (("conv2d", lambda: gpuconv.conv2d(s["x"], s["w"], s.get("b"), **conv_args)),
                       ("conv2d_backward", lambda: gpuconv.conv2d_backward(s["gy"], s["x"], s["w"], **conv_args))):
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            ret = call()
        except Exception as e:
            tracemalloc.stop()
            result[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        returned = sum(r.nbytes for r in (ret if isinstance(ret, tuple) else (ret,)) if r is not None)
        result[name] = {"peak_MiB": peak / MIB, "returned_MiB": returned / MIB,
                        "workspace_MiB": (peak - returned) / MIB, "peak_x_io": peak / io_bytes,
                        "workspace_x_io": (peak - returned) / io_bytes, "seconds": seconds}
        del ret
    return result


def serve(name, threads, rfile, wfile):
    side = _Side(name, threads)
    pickle.dump({"ready": side.info(threads)}, wfile, protocol=pickle.HIGHEST_PROTOCOL)
    wfile.flush()
    sets = {}
    while True:
        try:
            req = pickle.load(rfile)
        except EOFError:
            return
        op = req["op"]
        if op == "exit":
            return
        try:
            if op == "load":
                sets.clear()  # one layer's sets at a time
                sets[req["key"]] = [side.inputs(s) for s in req["sets"]]
                reply = {}
            elif op == "time":
                reply = time_pass(side, sets[req["key"]], req["spec"], req["warmup"], req["budget_s"],
                                  req["min_reps"], req["max_reps"])
            elif op == "memory":
                reply = {"memory": memory(side.inputs(req["set"]), req["conv_args"])}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:  # a failing call is a result: the parent records it
            reply = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)}
        pickle.dump(reply, wfile, protocol=pickle.HIGHEST_PROTOCOL)
        wfile.flush()
        # Free the reply (it holds a result) now, not halfway through the next request's timing: freeing a
        # large block changes glibc malloc's state (trim, mmap threshold), and with it how many page
        # faults each timed call takes (measured: 1 ms calls of 7 ms, 400k faults per request).
        del reply, req


class Worker:
    """The parent's handle on one worker process: started with a clean interpreter (subprocess, so no
    library loaded in the parent is inherited), given the environment as found plus `env`."""

    def __init__(self, name, threads, env=None):
        import subprocess

        self.name = name
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), name, str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, **(env or {})})
        self.info = self._reply()["ready"]

    def _reply(self):
        try:
            return pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(f"{self.name} worker exited (status {self.proc.wait()})") from None

    def request(self, **req):
        pickle.dump(req, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"{self.name} worker: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                pickle.dump({"op": "exit"}, self.proc.stdin)
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, ValueError):
                pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def main():
    name, threads = sys.argv[1], int(sys.argv[2])
    if name not in ("gpuconv", "torch"):
        raise SystemExit(f"usage: {sys.argv[0]} gpuconv|torch THREADS")
    # The protocol owns the original stdout; whatever the libraries print goes to stderr.
    wfile = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(name, threads, sys.stdin.buffer, wfile)


if __name__ == "__main__":
    main()
