"""Fused patch attention for CPUs: a small C++ kernel, compiled on first use, called with ctypes.

Why: PTv3's patch attention at head width 8 (every level of ptv3_half) spends most of its time in
torch's CPU flash-attention kernel, whose two GEMMs per block have an inner or outer size of 8.
`kernels/patch_attention.cpp` keeps one head's keys and values in cache and computes each query
row in one pass of vector FMAs and exponentials (formulas and layouts in its header). It computes
the same function as `F.scaled_dot_product_attention` with a key mask, in float32, with errors of
the same size as SDPA's (tests/models/test_cpu_attention.py compares both with float64).

When it is used (`usable`): CPU tensors, float32, head width 8, no attention dropout, not under
jit tracing, torch.compile or torch.export, and the library built. Everything else takes SDPA.

Building: the source is compiled with the system C++ compiler ($CXX, else c++ / g++ / clang++) into
$SRKD_KERNEL_DIR (default ~/.cache/srkd/kernels, or $XDG_CACHE_HOME/srkd/kernels), once per
source, flags, compiler and CPU (the file name is a hash of all four; `-march=native` code must
not move to another CPU model). The write is atomic (concurrent processes are safe), the file is
0755 less the umask, and a file that does not load is rebuilt once. Every load refreshes the file's
modification time, and a new build deletes the folder's other builds unused for STALE_DAYS (older
sources, CPUs no longer seen) and leftovers of interrupted builds. If no compiler works, srkd
warns once and uses SDPA. $SRKD_CPU_ATTENTION=sdpa turns the kernel off
("fused" or unset: on).

Threads: the (patch, head) tasks are split into torch.get_num_threads() ranges, run by the calling
thread and a pool; ctypes releases the GIL during each call. Results do not depend on the thread
count. The kernel has first derivatives only, like torch's CPU flash attention.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch

from srkd.errors import DataError

SOURCE = Path(__file__).resolve().parent / "kernels" / "patch_attention.cpp"
HEAD_WIDTHS = (8,)  # the widths the kernel's entry points accept; at 16 it gains only in backward (docs/benchmarks.md)
FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared")
SWITCH_ENV = "SRKD_CPU_ATTENTION"  # "sdpa": never use the fused kernel
DIR_ENV = "SRKD_KERNEL_DIR"
STALE_DAYS = 30  # a build no process has loaded for this long is deleted by the next build

_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float


def kernel_dir() -> Path:
    """Where built kernels live: $SRKD_KERNEL_DIR, else <XDG cache or ~/.cache>/srkd/kernels."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srkd" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_signature() -> str:
    """The CPU model and its feature flags (Linux), else the machine name."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(lines))) or platform.machine()


def _library_path(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode(), _cpu_signature().encode()):
        digest.update(hashlib.sha256(part).digest())
    return kernel_dir() / f"patch_attention-{digest.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path, flags: tuple[str, ...] = FLAGS) -> None:
    """Compile SOURCE with `flags` into `target` through a temporary file and an atomic rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        command = [cxx, *flags, "-o", tmp, str(SOURCE)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {done.stderr.strip()[-2000:]}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)  # mkstemp made it 0600: others sharing the folder must load it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale(folder: Path, keep: Path) -> None:
    """Delete the builds in `folder` other than `keep` that no process loaded for STALE_DAYS
    (loading refreshes a file's modification time, so a build some machine sharing the folder
    still uses stays), and temporary files of builds interrupted more than a day ago."""
    now = time.time()
    old = [(p, STALE_DAYS * 86400.0) for p in folder.glob("patch_attention-*.so") if p != keep]
    old += [(p, 86400.0) for p in folder.glob(".patch_attention-*.tmp")]
    for path, age in old:
        try:
            if now - path.stat().st_mtime > age:
                path.unlink()
        except OSError:  # gone already, or a folder we may not write: leave it
            pass


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.srkd_attention_forward.argtypes = [_P, _P, _I, _I, _I, _I, _F, _P, _P, _I, _I]
    lib.srkd_attention_forward.restype = ctypes.c_int
    lib.srkd_attention_backward.argtypes = [_P, _P, _P, _P, _P, _I, _I, _I, _I, _F, _P, _I, _I]
    lib.srkd_attention_backward.restype = ctypes.c_int
    return lib


def _load(cxx: str) -> ctypes.CDLL:
    """Load the built library, building it first if it is missing; a file that does not load (a
    truncated copy, another machine's build) is rebuilt once."""
    path = _library_path(cxx)
    if not path.exists():
        _build(cxx, path)
        _remove_stale(path.parent, path)
    try:
        lib = _bind(ctypes.CDLL(str(path)))
    except OSError:
        _build(cxx, path)
        lib = _bind(ctypes.CDLL(str(path)))
    try:
        os.utime(path)  # in use: keeps it from being deleted as stale
    except OSError:  # a read-only shared folder
        pass
    return lib


@lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL | None:
    """The built kernel library, building it if needed; None (after one warning) if it cannot be
    built or loaded, or when $SRKD_CPU_ATTENTION=sdpa."""
    switch = os.environ.get(SWITCH_ENV, "").lower()
    if switch == "sdpa":
        return None
    try:
        if switch not in ("", "fused"):
            raise RuntimeError(f"${SWITCH_ENV}={switch!r} is not 'fused' or 'sdpa'")
        cxx = _compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found (set $CXX, or install g++)")
        return _load(cxx)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        warnings.warn(
            f"srkd: the fused CPU attention kernel is not available ({e}); PTv3 uses torch's "
            f"scaled_dot_product_attention on CPU instead (slower at head width 8). "
            f"Set {SWITCH_ENV}=sdpa to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def usable(grid: torch.Tensor, dropout_p: float) -> bool:
    """True when `patch_attention` can run on grid (S, L, 3, H, D) with this dropout."""
    return (
        grid.device.type == "cpu"
        and grid.dtype == torch.float32
        and grid.shape[-1] in HEAD_WIDTHS
        and dropout_p == 0.0
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()  # torch.compile / torch.export trace fake tensors
        and load_library() is not None
    )


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}  # by thread count


def _forget_pools_after_fork() -> None:
    # A forked child inherits the pool objects but not their threads (and maybe a held lock).
    global _pool_lock
    _pool_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _run(call, tasks: int) -> None:
    """Run call(begin, end) over [0, tasks) in torch.get_num_threads() contiguous ranges: the
    calling thread takes the first, a pool of threads - 1 the others."""
    threads = max(1, min(torch.get_num_threads(), tasks))
    bounds = [tasks * i // threads for i in range(threads + 1)]
    futures = []
    if threads > 1:
        with _pool_lock:
            if threads not in _pools:
                _pools[threads] = ThreadPoolExecutor(threads - 1, thread_name_prefix="srkd-attn")
            pool = _pools[threads]
        futures = [pool.submit(call, b, e) for b, e in itertools.pairwise(bounds[1:])]
    _check(call(bounds[0], bounds[1]))
    for future in futures:
        _check(future.result())


def _check(rc: int) -> None:
    if rc == -1:
        raise ValueError(f"fused CPU attention: head width not in {HEAD_WIDTHS}")
    if rc != 0:
        raise MemoryError("fused CPU attention: out of memory for its work buffer")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _PatchAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: torch.Tensor, lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
        grid = grid.contiguous()
        s, length, _, h, d = grid.shape
        out = grid.new_empty((s, length, h, d))
        lse = grid.new_empty((s, h, length))
        lib = load_library()
        _run(lambda b, e: lib.srkd_attention_forward(
            grid.data_ptr(), _ptr(lengths), s, length, h, d, scale, out.data_ptr(), lse.data_ptr(), b, e), s * h)
        ctx.save_for_backward(grid, out, lse, lengths)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative was asked for
            raise RuntimeError("the fused CPU attention has no second derivative (neither has torch's CPU "
                               f"flash attention); set {SWITCH_ENV}=sdpa and use the math backend")
        grid, out, lse, lengths = ctx.saved_tensors
        dout = dout.contiguous()
        s, length, _, h, d = grid.shape
        dgrid = torch.empty_like(grid)
        lib = load_library()
        _run(lambda b, e: lib.srkd_attention_backward(
            grid.data_ptr(), out.data_ptr(), dout.data_ptr(), lse.data_ptr(), _ptr(lengths),
            s, length, h, d, ctx.scale, dgrid.data_ptr(), b, e), s * h)
        return dgrid, None, None


def _check_inputs(grid: torch.Tensor, lengths: torch.Tensor | None) -> None:
    """DataError unless grid is a CPU float32 (S, L, 3, H, D) tensor of a built width and lengths is
    None or (S,) with 0 <= lengths <= L (the kernel trusts both)."""
    if grid.device.type != "cpu" or grid.dtype != torch.float32 or grid.dim() != 5 or grid.shape[2] != 3:
        raise DataError(f"patch_attention: grid must be a CPU float32 (S, L, 3, H, D) tensor, "
                        f"got {grid.dtype} {tuple(grid.shape)} on {grid.device}")  # fmt: skip
    if grid.shape[-1] not in HEAD_WIDTHS:
        raise DataError(f"patch_attention: head width {grid.shape[-1]} is not built (built: {HEAD_WIDTHS})")
    if lengths is not None:
        s, length = grid.shape[:2]
        if lengths.shape != (s,):
            raise DataError(f"patch_attention: lengths must have shape ({s},), got {tuple(lengths.shape)}")
        if s and not bool(((lengths >= 0) & (lengths <= length)).all()):
            raise DataError(f"patch_attention: lengths must lie in [0, {length}], got "
                            f"{int(lengths.min())}..{int(lengths.max())}")  # fmt: skip


def patch_attention(grid: torch.Tensor, lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Softmax attention inside each patch, with autograd (first derivatives only).

    grid:    float32 (S, L, 3, H, D) queries, keys and values of S patches of L slots (CPU).
    lengths: int (S,) valid slots of each patch, 0 <= length <= L (keys at slots >= length are
             masked), or None when every patch is full.
    scale:   the softmax scale (usually D ** -0.5).
    Returns float32 (S, L, H, D); rows at invalid slots are zero, and so are their gradients. Equal
    (to float32 rounding) to `F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
    scale=scale)` on the valid rows. Raises DataError for inputs the kernel cannot take.
    """
    _check_inputs(grid, lengths)
    if load_library() is None:
        raise DataError("patch_attention: the fused CPU kernel is not available here (see the warning)")
    if lengths is not None:
        lengths = lengths.to(torch.int32).contiguous()
    return _PatchAttention.apply(grid, lengths, float(scale))
