"""Sparse 3D convolution for srkd: the ONLY module in the project that imports spconv.

Everything else builds sparse tensors and sparse convolutions through the names below, so the
spconv workarounds live in one place.

Public interface (stable; later changes are additive only)
----------------------------------------------------------
- ``SparseTensor``: alias of ``spconv.pytorch.SparseConvTensor``. Fields used in srkd:
  ``features`` float (M, C), ``indices`` int32 (M, 4) = [batch, x, y, z], ``spatial_shape``
  list[int] of 3, ``batch_size`` int.
- ``make_sparse(feat, grid_coord, batch_index, spatial_shape=None, batch_size=None, pad_to=16)``
  -> SparseTensor whose rows are exactly the input rows, in the same order.
- ``batch_to_sparse(batch, feat=None, pad_to=16) -> (SparseTensor, inverse)``: one row per occupied
  voxel of a PointBatch (duplicate voxels averaged); ``inverse`` int64 (N,) maps points to rows,
  so ``x.features[inverse]`` is per point in batch order.
- ``replace_feature(x, feat) -> SparseTensor`` (same indices, new features (M, C')).
- ``subm_conv_with_maps(conv, x, maps) -> SparseTensor``: a submanifold conv that reads its
  neighbour map from ``maps`` (indice_key -> map) and adds the ones it builds there.
- ``SubMConv3d(in_c, out_c, kernel_size=3, indice_key=None, bias=True)``: submanifold conv,
  output rows = input rows.
- ``SparseConv3d(in_c, out_c, kernel_size=2, stride=2, indice_key=None, bias=False)``: strided
  (downsampling) conv; give it an ``indice_key`` to invert it later.
- ``SparseInverseConv3d(in_c, out_c, kernel_size=2, indice_key=..., bias=False)``: upsamples back to
  exactly the input rows of the SparseConv3d with the same ``indice_key`` (same order).
- ``SparseSequential``: spconv's container; plain ``nn.Module``s in it (BatchNorm1d, ReLU,
  Linear) act on ``features``.
- ``SparseModule``: spconv's base class for modules that take a SparseTensor.
- ``is_sparse_conv(m)``: whether ``m`` is one of the conv classes above.

Parameter names and shapes are spconv 2.x's: ``weight`` float (out, k, k, k, in) (the "KRSC"
layout, the only layout spconv >= 2.2 uses) and ``bias`` float (out,), so Pointcept checkpoints
(which use ``spconv.SubMConv3d`` directly) load unchanged.

Why the workarounds (see DESIGN.md, "Facts about the dependencies"):
- spconv-cu120 on a CPU-only torch runs only the ``Native`` algorithm; its default
  (``MaskImplicitGemm``) is CUDA-only. The algorithm is picked per forward call from the device of
  the features: ``Native`` on CPU, spconv's default on CUDA. All convs sharing an ``indice_key``
  see the same device in one forward, so they agree on the algorithm as spconv requires.
- spconv asks ``torch.cuda.current_stream()`` on every op even for CPU tensors; that raises on a
  CPU-only torch, so the stream getter is patched (once, at import) to return 0 without CUDA.
- spconv fuses the bias into the kernel in eval mode, and that kernel is CUDA-only ("bias and act
  don't support cpu"). On CPU the conv runs without bias and the bias is added afterwards.
- Importing spconv builds a Python table of its CUDA implicit-GEMM kernels (seconds per process);
  without CUDA no conv can run them, so that table is built empty.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

with warnings.catch_warnings():
    # spconv 2.3.6 (and its ccimport helper) use APIs that newer torch/Python deprecate; harmless.
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import spconv.core as _spconv_core

    # Importing spconv.pytorch builds, in Python, a tuner entry for each of spconv's CUDA
    # implicit-GEMM kernels (ALL_IMPGEMM_PARAMS): most of the seconds that import takes, paid by
    # every process, for kernels only the CUDA-only MaskImplicitGemm algorithm runs. Without CUDA
    # every conv runs Native (see _DeviceAwareConv), so the table is built empty there.
    _impgemm_params = _spconv_core.ALL_IMPGEMM_PARAMS
    if not torch.cuda.is_available():
        _spconv_core.ALL_IMPGEMM_PARAMS = []
    try:
        import spconv.pytorch as spconv
    finally:
        _spconv_core.ALL_IMPGEMM_PARAMS = _impgemm_params
    import spconv.pytorch.conv as _spconv_conv
    import spconv.pytorch.cppcore as _cppcore
    from spconv.core import ConvAlgo

from srkd.errors import ConfigError, DataError

if TYPE_CHECKING:
    from srkd.data.collate import PointBatch

__all__ = [
    "SparseTensor",
    "SparseSequential",
    "SparseModule",
    "SubMConv3d",
    "SparseConv3d",
    "SparseInverseConv3d",
    "make_sparse",
    "batch_to_sparse",
    "replace_feature",
    "subm_conv_with_maps",
    "is_sparse_conv",
    "spatial_shape_for",
    "voxel_unique",
]

SparseTensor = spconv.SparseConvTensor
SparseSequential = spconv.SparseSequential
SparseModule = spconv.SparseModule

_original_get_current_stream = _cppcore.get_current_stream


def _get_current_stream() -> int:
    """spconv's stream getter, returning the null stream (0) when torch has no CUDA."""
    if not torch.cuda.is_available():
        return 0
    return _original_get_current_stream()


def _patch_stream_getter() -> None:
    # spconv's submodules import the function by name, so each module's binding must be replaced.
    import importlib

    for mod_name in ("cppcore", "ops", "hash", "utils"):
        try:
            mod = importlib.import_module(f"spconv.pytorch.{mod_name}")
        except ImportError:  # pragma: no cover - layout of other spconv versions
            continue
        if getattr(mod, "get_current_stream", None) is _original_get_current_stream:
            mod.get_current_stream = _get_current_stream


_patch_stream_getter()


def _mute_fx_tracing_notice() -> None:
    # spconv's SparseSequential calls torch.fx's is_fx_tracing(), which logs a once-per-process
    # notice about torch.export that means nothing to srkd users; spend that "once" here, muted.
    try:
        from torch.fx import _symbolic_trace as fx_trace

        logger, level = fx_trace.log, fx_trace.log.level
        logger.setLevel(logging.ERROR)
        try:
            fx_trace.is_fx_tracing_warning()
        finally:
            logger.setLevel(level)
    except Exception:  # pragma: no cover - private torch API; the notice is cosmetic
        pass


_mute_fx_tracing_notice()


class _DeviceAwareConv:
    """Mixin over a spconv conv class: per-call algorithm choice and CPU-safe bias.

    Must come before the spconv class in the bases. The spconv constructor is always called with
    ``algo=None`` so it records its preferred CUDA algorithm, which is kept in ``_cuda_algo``.
    """

    def _init_algo(self) -> None:
        self._cuda_algo = self.algo  # what spconv chose for CUDA (Native for very large kernels)
        self.algo = ConvAlgo.Native

    def forward(self, input: SparseTensor, add_input: SparseTensor | None = None) -> SparseTensor:
        if not isinstance(input, SparseTensor):
            raise TypeError(f"{type(self).__name__} expects a SparseTensor, got {type(input).__name__}")
        on_cuda = input.features.is_cuda
        self.algo = self._cuda_algo if on_cuda else ConvAlgo.Native
        if not on_cuda and torch.is_autocast_enabled("cpu"):
            # spconv's CPU kernels have no bfloat16 (and call torch.mm inside, which a CPU autocast
            # would turn into bfloat16): the conv runs in float32, the layers around it in bf16
            with torch.autocast("cpu", enabled=False):
                if add_input is not None:
                    add_input = add_input.replace_feature(add_input.features.float())
                return self.forward(input.replace_feature(input.features.float()), add_input)
        if on_cuda or self.bias is None:
            return super().forward(input, add_input)  # type: ignore[misc]
        out = self._conv_forward(  # type: ignore[attr-defined]
            self.training,
            input,
            self.weight,
            None,
            add_input,
            name=self.name,
            sparse_unique_name=self._sparse_unique_name,
            act_type=self.act_type,
            act_alpha=self.act_alpha,
            act_beta=self.act_beta,
        )
        return out.replace_feature(out.features + self.bias)


class SubMConv3d(_DeviceAwareConv, spconv.SubMConv3d):
    """Submanifold 3D conv: output rows = input rows (same indices, same order).

    features float (M, in_c) -> float (M, out_c). ``weight`` (out_c, k, k, k, in_c), ``bias``
    (out_c,) when ``bias=True``. Convs with the same ``indice_key`` reuse one neighbour map.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        indice_key: str | None = None,
        bias: bool = True,
        padding: int = 0,
        dilation: int = 1,
    ) -> None:
        spconv.SubMConv3d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=padding,
            dilation=dilation,
            bias=bias,
            indice_key=indice_key,
            algo=None,
        )
        self._init_algo()


class SparseConv3d(_DeviceAwareConv, spconv.SparseConv3d):
    """Regular (strided) sparse 3D conv: output rows are the occupied cells of the coarser grid.

    With ``kernel_size == stride == 2`` the output voxel of input voxel v is v // 2. Spatial shape
    becomes floor((S + 2 * padding - kernel_size) / stride) + 1, which is why ``make_sparse`` pads
    spatial shapes to a multiple of 2 ** (number of downsamplings).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        indice_key: str | None = None,
        bias: bool = False,
        padding: int = 0,
    ) -> None:
        spconv.SparseConv3d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=bias,
            indice_key=indice_key,
            algo=None,
        )
        self._init_algo()


class SparseInverseConv3d(_DeviceAwareConv, spconv.SparseInverseConv3d):
    """Inverse of the SparseConv3d registered under ``indice_key``: its output rows are exactly
    that conv's input rows (same order), features float (M_coarse, in_c) -> (M_fine, out_c)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        indice_key: str | None = None,
        bias: bool = False,
    ) -> None:
        if not indice_key:
            raise ConfigError("SparseInverseConv3d needs the indice_key of the SparseConv3d it inverts")
        spconv.SparseInverseConv3d.__init__(
            self, in_channels, out_channels, kernel_size, indice_key=indice_key, bias=bias, algo=None
        )
        self._init_algo()


def is_sparse_conv(module: nn.Module) -> bool:
    """True for the srkd sparse conv classes (and raw spconv convs, e.g. from foreign code)."""
    return isinstance(module, _spconv_conv.SparseConvolution)


def spatial_shape_for(grid_coord: torch.Tensor, pad_to: int = 16) -> list[int]:
    """Per-axis spatial shape for int (N, 3) voxel coords: (max + 1) rounded up to ``pad_to``.

    Rounding to a multiple of 2**k keeps every voxel inside the grid through k stride-2 convs.
    """
    if pad_to < 1:
        raise ConfigError(f"pad_to must be >= 1, got {pad_to}")
    if grid_coord.numel() == 0:
        return [pad_to] * 3
    top = grid_coord.max(dim=0).values.to(torch.int64) + 1
    return [int(-(-int(v) // pad_to) * pad_to) for v in top.tolist()]


def make_sparse(
    feat: torch.Tensor,
    grid_coord: torch.Tensor,
    batch_index: torch.Tensor,
    spatial_shape: list[int] | None = None,
    batch_size: int | None = None,
    pad_to: int = 16,
) -> SparseTensor:
    """Build a SparseTensor whose rows are the given rows, in order.

    feat:        float (N, C) features.
    grid_coord:  int (N, 3) non-negative voxel coords; rows must be unique per batch entry
                 (spconv's neighbour search assumes it; use ``batch_to_sparse`` otherwise).
    batch_index: int (N,) sample index of each row, in [0, batch_size).
    spatial_shape: [X, Y, Z]; default ``spatial_shape_for(grid_coord, pad_to)``.
    batch_size:  default ``batch_index.max() + 1``.
    Returns a SparseTensor with ``indices`` int32 (N, 4) = [batch, x, y, z] on feat's device.
    """
    if feat.ndim != 2 or grid_coord.ndim != 2 or grid_coord.shape[1] != 3:
        raise DataError(
            f"make_sparse needs feat (N, C) and grid_coord (N, 3); got {tuple(feat.shape)} and "
            f"{tuple(grid_coord.shape)}"
        )
    n = feat.shape[0]
    if grid_coord.shape[0] != n or batch_index.shape != (n,):
        raise DataError(
            f"make_sparse: row counts differ: feat {n}, grid_coord {grid_coord.shape[0]}, "
            f"batch_index {tuple(batch_index.shape)}"
        )
    if n == 0:
        raise DataError("make_sparse: empty input (0 points)")
    if torch.is_floating_point(grid_coord) or bool((grid_coord < 0).any()):
        raise DataError("make_sparse: grid_coord must be non-negative integers (voxel indices)")
    if spatial_shape is None:
        spatial_shape = spatial_shape_for(grid_coord, pad_to)
    if batch_size is None:
        batch_size = int(batch_index.max()) + 1
    indices = torch.cat([batch_index.reshape(-1, 1), grid_coord], dim=1).to(
        device=feat.device, dtype=torch.int32
    )
    return SparseTensor(feat, indices.contiguous(), list(spatial_shape), int(batch_size))


def replace_feature(x: SparseTensor, feat: torch.Tensor) -> SparseTensor:
    """A SparseTensor with the indices (and neighbour maps) of ``x`` and features ``feat`` (M, C')."""
    if feat.shape[0] != x.features.shape[0]:
        raise DataError(f"replace_feature: {feat.shape[0]} rows for a tensor of {x.features.shape[0]}")
    return x.replace_feature(feat)


def subm_conv_with_maps(conv: nn.Module, x: SparseTensor, maps: dict) -> SparseTensor:
    """``conv(x)`` for a submanifold conv (output rows = input rows), with ``maps`` (indice_key ->
    neighbour map) as the maps of ``x``; the maps ``conv`` builds are added to ``maps``.

    spconv gives a map it builds only to the conv's output (it copies the input's
    ``indice_dict``), so a tensor re-used with new features (``replace_feature``) would build the
    same map at every conv. A caller keeping one ``maps`` per set of rows builds each map once, as
    a tensor flowing from conv to conv (Pointcept's ``Point.sparse_conv_feat``) does. Keep one
    ``maps`` per mode too: spconv builds a map for a conv in eval mode without the pairs its
    backward needs on CUDA, so an eval map must not serve a conv in training mode.
    """
    if not getattr(conv, "subm", False):
        raise ConfigError(f"subm_conv_with_maps needs a submanifold conv, got {type(conv).__name__}")
    x.indice_dict = maps
    out = conv(x)
    maps.update(out.indice_dict)
    return out


def voxel_unique(grid_coord: torch.Tensor, batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique (batch, voxel) keys of N points.

    Returns (first, inverse): ``first`` int64 (M,) the index of one point per occupied voxel (sorted
    by key), ``inverse`` int64 (N,) the voxel row of every point (``first[inverse[i]]`` shares point
    i's voxel).
    """
    g = grid_coord.to(torch.int64)
    # Pack (batch, x, y, z) into one int64 key; 20 bits per axis covers 1M voxels (20 km at 2 cm).
    if bool((g >= (1 << 20)).any()):
        raise DataError("voxel coordinates >= 2**20 are not supported; use a coarser grid")
    key = (((batch_index.to(torch.int64) << 20 | g[:, 0]) << 20 | g[:, 1]) << 20) | g[:, 2]
    _, inverse = torch.unique(key, return_inverse=True)
    m = int(inverse.max()) + 1 if inverse.numel() else 0
    first = torch.full((m,), key.numel(), dtype=torch.int64, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin")
    return first, inverse


def batch_to_sparse(
    batch: PointBatch, feat: torch.Tensor | None = None, pad_to: int = 16
) -> tuple[SparseTensor, torch.Tensor]:
    """A SparseTensor with one row per occupied voxel of ``batch``, plus the point -> row map.

    feat: float (N, C) per-point features (default ``batch.feat``); points that share a voxel are
    averaged. Returns (x, inverse): x.features float (M, C), inverse int64 (N,) with
    ``x.features[inverse]`` (N, C) back in batch point order. When every point has its own voxel
    (grid-sampled batches) M == N, but rows are still in key order, not point order.
    """
    feat = batch.feat if feat is None else feat
    if feat.shape[0] != batch.grid_coord.shape[0]:
        raise DataError(f"batch_to_sparse: feat has {feat.shape[0]} rows, batch {batch.grid_coord.shape[0]}")
    bidx = batch.batch_index.to(feat.device)
    grid = batch.grid_coord.to(feat.device)
    first, inverse = voxel_unique(grid, bidx)
    m = first.numel()
    if m == feat.shape[0]:
        vfeat = torch.empty_like(feat).index_copy_(0, inverse, feat)
    else:
        vfeat = feat.new_zeros((m, feat.shape[1])).index_add_(0, inverse, feat)
        counts = torch.bincount(inverse, minlength=m).clamp_min(1).to(feat.dtype)
        vfeat = vfeat / counts[:, None]
    x = make_sparse(
        vfeat,
        grid[first],
        bidx[first],
        spatial_shape=spatial_shape_for(grid, pad_to),
        batch_size=batch.batch_size,
    )
    return x, inverse
