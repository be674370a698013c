"""The fused CPU patch attention (srkd/models/cpu_attention.py) against SDPA in float64."""

from __future__ import annotations

import ctypes
import os
import platform
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from srkd.errors import DataError
from srkd.models import cpu_attention
from srkd.models.attention import SerializedAttention, patch_layout

# Skip only where no compiler exists: a kernel that fails to build must fail the tests, not skip them.
needs_kernel = pytest.mark.skipif(cpu_attention._compiler() is None, reason="no C++ compiler here")


def _reference(grid: torch.Tensor, lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """SDPA with a key mask, (S, L, 3, H, D) -> (S, L, H, D)."""
    length = grid.shape[1]
    q, k, v = grid.permute(2, 0, 3, 1, 4).unbind(0)
    mask = None
    if lengths is not None:
        mask = (torch.arange(length)[None, :] < lengths[:, None].long())[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)


def _valid(s: int, length: int, lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        return torch.ones(s, length, dtype=torch.bool)
    return torch.arange(length)[None, :] < lengths[:, None].long()


@needs_kernel
def test_the_kernel_builds_where_a_compiler_exists():
    assert cpu_attention.load_library() is not None


# The build of this machine (-march=native) plus, on x86-64, the narrower vector paths other
# machines compile: AVX2 + FMA (8 lanes, the portable exponential) and plain SSE2 (4 lanes).
# (An AVX2 build is run only on a CPU that has AVX2: elsewhere it would stop the test process.)
OTHER_BUILDS = {"avx2": ("-march=x86-64", "-mavx2", "-mfma"), "sse2": ("-march=x86-64",)}
_X86 = platform.machine().lower() in ("x86_64", "amd64")
_AVX2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
BUILDS = ["native"] + ["sse2"] * _X86 + ["avx2"] * (_X86 and _AVX2)


@pytest.fixture(scope="module")
def other_builds(tmp_path_factory) -> dict:
    """Libraries built from the kernel source with OTHER_BUILDS' flags, built on first use."""
    built: dict = {}

    def get(name: str):
        if name not in built:
            flags = tuple(f for f in cpu_attention.FLAGS if not f.startswith("-march")) + OTHER_BUILDS[name]
            path = tmp_path_factory.mktemp(name) / "patch_attention.so"
            cpu_attention._build(cpu_attention._compiler(), path, flags)
            built[name] = cpu_attention._bind(ctypes.CDLL(str(path)))
        return built[name]

    return get


def _use(build: str, other_builds, monkeypatch) -> None:
    """Make cpu_attention call the library of `build` (BUILDS)."""
    if build != "native":
        lib = other_builds(build)
        monkeypatch.setattr(cpu_attention, "load_library", lambda: lib)


def _grid(s: int, length: int, heads: int, spread: float, opposed: bool, gen: torch.Generator) -> torch.Tensor:
    grid = torch.randn(s, length, 3, heads, 8, generator=gen) * spread
    if opposed:  # keys point away from the queries: every score strongly negative
        grid[:, :, 1] = -grid[:, :, 0].mean(1, keepdim=True) + 0.01 * grid[:, :, 1]
    return grid


@needs_kernel
@pytest.mark.parametrize(
    "s, length, heads, spread, lengths, opposed",
    [(3, 37, 2, 2.0, "random", False), (2, 64, 3, 1.0, None, False), (4, 50, 1, 1.0, "random", False),
     (2, 5, 2, 1.0, "random", False), (1, 300, 2, 12.0, None, False), (5, 40, 2, 1.0, [16, 32, 1, 40, 0], False),
     (2, 40, 2, 6.0, [37, 21], True), (2, 40, 1, 20.0, [33, 17], True)],
)
@pytest.mark.parametrize("build", BUILDS)
def test_forward_and_backward_match_sdpa_in_float64(s, length, heads, spread, lengths, opposed, build,
                                                    other_builds, monkeypatch):
    _use(build, other_builds, monkeypatch)
    gen = torch.Generator().manual_seed(length)
    grid = _grid(s, length, heads, spread, opposed, gen)
    if lengths == "random":
        lengths = torch.randint(1, length + 1, (s,), generator=gen, dtype=torch.int32)
    elif lengths is not None:
        lengths = torch.tensor(lengths, dtype=torch.int32)
    scale = 8**-0.5
    valid = _valid(s, length, lengths)[:, :, None, None]
    grad_out = torch.randn(s, length, heads, 8, generator=gen) * valid

    def run(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.clone().requires_grad_()
        out = fn(x, lengths, scale)
        (out * grad_out.to(x.dtype)).sum().backward()
        return out.detach().double(), x.grad.double()

    out, grad = run(cpu_attention.patch_attention, grid)
    sdpa_out, sdpa_grad = run(_reference, grid)  # float32 SDPA: the error bar of float32
    ref_out, ref_grad = run(_reference, grid.double())
    keep, keep5 = valid.expand_as(out), valid[:, :, None].expand_as(grad)

    def err(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
        return float(((a - b) * where).abs().max())

    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert err(out, ref_out, keep) <= 2 * err(sdpa_out, ref_out, keep) + 4e-7  # + 3 float32 ulps at 1
    assert err(grad, ref_grad, keep5) <= 2 * err(sdpa_grad, ref_grad, keep5) + 4e-7
    assert not out[~keep].any() and not grad[~keep5].any()  # invalid slots: zero output and gradient


@needs_kernel
@pytest.mark.parametrize("build", BUILDS)
def test_nan_in_queries_or_keys_reaches_the_output_as_in_sdpa(build, other_builds, monkeypatch):
    _use(build, other_builds, monkeypatch)
    grid = torch.randn(2, 20, 3, 1, 8)
    grid[0, 3, 0, 0, 0] = float("nan")  # one query of patch 0
    grid[1, 5, 1, 0, 2] = float("nan")  # one key of patch 1
    out = cpu_attention.patch_attention(grid, None, 0.35)
    assert torch.isnan(out[0, 3]).all() and not torch.isnan(out[0, :3]).any()
    assert torch.isnan(out[1]).all()  # every query of patch 1 reads that key
    assert torch.equal(torch.isnan(out), torch.isnan(_reference(grid, None, 0.35)))


@needs_kernel
def test_a_second_derivative_is_refused_not_silently_wrong():
    x = torch.randn(1, 16, 3, 1, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(cpu_attention.patch_attention(x, None, 0.35).sum(), x, create_graph=True)


@pytest.mark.parametrize(
    "grid, lengths, message",
    [(torch.zeros(1, 16, 3, 1, 8, dtype=torch.float64), None, "float32"),
     (torch.zeros(16, 3, 1, 8), None, "float32"),
     (torch.zeros(1, 16, 3, 1, 16), None, "head width 16"),
     (torch.zeros(1, 16, 3, 1, 8), torch.tensor([17]), r"\[0, 16\]"),
     (torch.zeros(2, 16, 3, 1, 8), torch.tensor([3, -1]), r"\[0, 16\]"),
     (torch.zeros(2, 16, 3, 1, 8), torch.tensor([3]), r"shape \(2,\)")],
)
def test_inputs_the_kernel_cannot_take_are_refused(grid, lengths, message):
    with pytest.raises(DataError, match=message):
        cpu_attention.patch_attention(grid, lengths, 0.35)


@needs_kernel
def test_result_does_not_depend_on_the_thread_count():
    grid = torch.randn(5, 40, 3, 2, 8).requires_grad_()
    lengths = torch.tensor([40, 3, 17, 40, 1], dtype=torch.int32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            grid.grad = None
            out = cpu_attention.patch_attention(grid, lengths, 0.3)
            out.square().sum().backward()
            results.append((out.detach(), grid.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


def test_usable_only_for_float32_cpu_supported_widths_without_dropout_or_tracing(monkeypatch):
    grid = torch.zeros(1, 4, 3, 1, 8)
    built = cpu_attention.load_library() is not None
    assert cpu_attention.usable(grid, 0.0) is built
    assert not cpu_attention.usable(grid.double(), 0.0)
    assert not cpu_attention.usable(torch.zeros(1, 4, 3, 1, 16), 0.0)  # width 16: SDPA
    assert not cpu_attention.usable(grid, 0.1)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # torch.compile / export
    assert not cpu_attention.usable(grid, 0.0)


@needs_kernel
@pytest.mark.parametrize("masked", [False, True])
def test_serialized_attention_matches_the_sdpa_path(monkeypatch, masked):
    torch.manual_seed(0)
    attn = SerializedAttention(channels=16, num_heads=2, patch_size=32)  # head width 8
    n = 50 if masked else 64  # 50 = one full patch and a short sample
    feat = torch.randn(n, 16)
    offset = torch.tensor([40, n]) if masked else torch.tensor([n])
    order = torch.randperm(n)
    inverse = torch.argsort(order)
    layout = patch_layout(offset, 32)
    assert (layout.patch_lengths is not None) is masked

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        attn.zero_grad()
        out = attn(feat, order, inverse, layout)
        out.square().sum().backward()
        return out.detach(), attn.qkv.weight.grad.clone()

    fused = run()
    monkeypatch.setattr(cpu_attention, "usable", lambda grid, dropout_p: False)
    sdpa = run()
    torch.testing.assert_close(fused[0], sdpa[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], sdpa[1], rtol=1e-4, atol=1e-4)


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """load_library() with an empty kernel directory; restores the cached library afterwards."""
    monkeypatch.setenv(cpu_attention.DIR_ENV, str(tmp_path))
    cpu_attention.load_library.cache_clear()
    yield tmp_path
    cpu_attention.load_library.cache_clear()


def test_switch_turns_the_kernel_off(fresh_library, monkeypatch):
    monkeypatch.setenv(cpu_attention.SWITCH_ENV, "sdpa")
    assert cpu_attention.load_library() is None
    assert not cpu_attention.usable(torch.zeros(1, 4, 3, 1, 8), 0.0)
    assert not any(fresh_library.iterdir())


def test_an_unknown_switch_value_warns_and_uses_sdpa(fresh_library, monkeypatch):
    monkeypatch.setenv(cpu_attention.SWITCH_ENV, "fast")
    with pytest.warns(RuntimeWarning, match="'fast' is not 'fused' or 'sdpa'"):
        assert cpu_attention.load_library() is None


def test_failing_compiler_warns_once_and_leaves_no_file(fresh_library, monkeypatch):
    monkeypatch.setenv("CXX", "false")  # exists everywhere, always fails
    with pytest.warns(RuntimeWarning, match="fused CPU attention kernel is not available"):
        assert cpu_attention.load_library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_attention.load_library() is None  # cached: no second warning
    assert not any(fresh_library.iterdir())


@needs_kernel
def test_built_library_is_reused(fresh_library):
    assert cpu_attention.load_library() is not None
    built = list(fresh_library.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(built[0]).st_mode & 0o777 == 0o755 & ~umask  # others sharing the folder can load it
    inode = os.stat(built[0]).st_ino  # a rebuild would replace the file (a new inode)
    os.utime(built[0], (1, 1))
    cpu_attention.load_library.cache_clear()
    assert cpu_attention.load_library() is not None
    assert list(fresh_library.iterdir()) == built and os.stat(built[0]).st_ino == inode
    assert time.time() - os.stat(built[0]).st_mtime < 3600  # the load marked it as in use


@needs_kernel
def test_a_new_build_deletes_builds_unused_for_a_month(fresh_library):
    fresh_library.mkdir(parents=True, exist_ok=True)
    month = cpu_attention.STALE_DAYS * 86400
    old_build, recent_build = fresh_library / "patch_attention-0ld.so", fresh_library / "patch_attention-new.so"
    old_tmp, other = fresh_library / ".patch_attention-x.so.abc.tmp", fresh_library / "notes.txt"
    for path, age in ((old_build, month + 60), (recent_build, month - 3600), (old_tmp, 2 * 86400), (other, 10 * month)):
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age,) * 2)
    assert cpu_attention.load_library() is not None
    left = {p.name for p in fresh_library.iterdir()}
    assert old_build.name not in left and old_tmp.name not in left
    assert {recent_build.name, other.name} <= left and len(left) == 3  # and the new build


def _child_attention(queue) -> None:
    torch.set_num_threads(2)
    grid = torch.ones(4, 16, 3, 1, 8)
    queue.put(float(cpu_attention.patch_attention(grid, None, 1.0).sum()))


@needs_kernel
def test_a_forked_process_gets_its_own_thread_pool():
    import multiprocessing

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu_attention.patch_attention(torch.ones(4, 16, 3, 1, 8), None, 1.0)  # the parent's pool
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_attention, args=(queue,))
        child.start()
        child.join(30)
        assert child.exitcode == 0, "the forked child hung or failed"
        assert queue.get(timeout=5) == 4 * 16 * 8  # softmax of equal scores averages ones
    finally:
        torch.set_num_threads(before)


@needs_kernel
def test_a_library_that_does_not_load_is_rebuilt(fresh_library):
    path = cpu_attention._library_path(cpu_attention._compiler())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a shared library")  # e.g. a truncated copy
    assert cpu_attention.load_library() is not None
    assert path.stat().st_size > 1000
