"""`srkd inspect-cache DIR [--verify]`: what a teacher cache holds, and whether it is healthy."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from pipeline.commands import options as O
from pipeline.commands._common import user_errors


def inspect_cache(
    cache: O.InspectCacheDir,
    verify: O.Verify = False,
    repair: O.Repair = False,
    data_root: O.InspectDataRoot = None,
    as_json: O.AsJson = False,
    upgrade: O.Upgrade = False,
    migrate: O.Migrate = None,
) -> None:
    """Summarise a teacher cache; with --verify, check every scene and report the teacher's mIoU."""
    from rich.console import Console

    from srkd.cache.inspect import summarize, verify_scenes
    from srkd.errors import CacheError, ConfigError
    from srkd.scoring import teacher_miou

    console = Console()
    with user_errors():
        if not cache.is_dir():
            raise CacheError(f"no teacher cache at {cache} (not a directory)")
        if repair and not verify:
            raise ConfigError("--repair needs --verify (it marks the scenes --verify finds damaged)")
        if data_root is not None and not data_root.is_dir():
            raise ConfigError(f"--data-root {data_root} is not a directory")
        if upgrade:
            _upgrade(cache)
        if migrate is not None:
            _migrate(cache, migrate)
        summary = summarize(cache)
        result: dict = {"summary": summary}
        problems: list[str] = []
        if verify:
            with _repair_lock(cache) if repair else contextlib.nullcontext():
                root_problem, damaged = verify_scenes(cache)
                if repair and damaged:
                    result["marked_for_rebuild"] = _mark_for_rebuild(cache, sorted(damaged))
            problems = ([root_problem] if root_problem else []) + [p for ps in damaged.values() for p in ps]
            result["problems"] = problems
            result["teacher"] = _score(summary, data_root, problems, teacher_miou)
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        else:
            console.print(_summary_table(cache, summary))
            if verify:
                _print_verify(console, problems, result["teacher"])
        if problems:
            raise typer.Exit(code=1)


def _summary_table(cache: Path, summary: dict):  # type: ignore[no-untyped-def]
    """The cache's summary (`srkd.cache.inspect.summarize`) as a two-column rich table."""
    from rich.table import Table

    table = Table(title=f"teacher cache {cache}", show_header=False)
    spec = summary["spec"]
    rows = [
        ("dataset / split", f"{spec['dataset']} / {spec['split']} ({spec['data_root']})"),
        ("teacher", f"{spec['teacher_name']} sha256 {spec['teacher_sha256'][:12]}"),
        ("teacher colour input", summary["color_norm"]),
        ("classes / feature dim", f"{len(spec['class_names'])} / {spec['feature_dim']}"),
        ("views", f"{summary['views']}" + (" + ensemble" if summary["ensemble"] else "")),
        ("codec", summary["codec"]),
        ("scenes (committed)", str(summary["scenes"])),
        ("uncommitted scenes", str(len(summary["uncommitted"]))),
        ("points", f"{summary['points']:,}"),
        ("bytes on disk", f"{summary['bytes'] / 2**20:,.1f} MiB"),
        ("bytes / point / entry", f"{summary['bytes_per_point']:.1f}"),
        ("fingerprint", summary["fingerprint"][:16]),
        ("schema / srkd", f"{summary['schema_version']} / {summary['srkd_version']}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _upgrade(cache: Path) -> None:
    """srkd.cache.upgrade.upgrade_metadata under the cache's exclusive lock (no build runs)."""
    from srkd.cache.upgrade import upgrade_metadata
    from srkd.errors import CacheError
    from srkd.locking import locked_dir

    with locked_dir(cache, "teacher cache", CacheError):
        changed = upgrade_metadata(cache)
    typer.echo(f"--upgrade: {changed} array(s) given dimension names and decode attributes", err=True)


def _migrate(cache: Path, out: Path) -> None:
    """srkd.cache.migrate.migrate under OUT's exclusive lock and the source's shared one."""
    from srkd.cache.migrate import migrate
    from srkd.cache.writer import refuse_foreign_dir
    from srkd.errors import CacheError
    from srkd.locking import locked_dir

    with locked_dir(cache, "teacher cache", CacheError, shared=True), locked_dir(out, "teacher cache", CacheError):
        refuse_foreign_dir(out, f"--migrate {out}")
        report = migrate(cache, out, on_sequence=lambda name, n: typer.echo(f"--migrate: {name} ({n} scene(s))", err=True))
    typer.echo(f"--migrate: {len(report.written)} scene(s) written in {report.sequences} sequence(s), "
               f"{len(report.skipped)} already there; {out} verified bit-identical to {cache}", err=True)


def _repair_lock(cache: Path):  # type: ignore[no-untyped-def]
    """The cache's exclusive lock, for the whole verify-then-uncommit (no build or reader runs
    in between); refused for caches of a schema cache-teacher cannot extend."""
    from srkd.cache import CacheReader
    from srkd.cache.schema import WRITABLE_SCHEMAS
    from srkd.errors import CacheError
    from srkd.locking import locked_dir

    version = CacheReader(cache, cache_bytes=0).schema_version
    if version not in WRITABLE_SCHEMAS:
        raise CacheError(f"--repair: the cache at {cache} has schema version {version}, which "
                         "`srkd cache-teacher` cannot extend; rebuild it with --overwrite instead")
    return locked_dir(cache, "teacher cache", CacheError)


def _mark_for_rebuild(cache: Path, scenes: list[str]) -> list[str]:
    """Uncommit `scenes` (call under `_repair_lock`); the message goes to stderr (--json stays JSON)."""
    from srkd.cache.writer import uncommit
    from srkd.errors import CacheError

    try:
        changed = uncommit(cache, scenes)
    except OSError as exc:
        raise CacheError(f"--repair cannot write the cache at {cache}: {exc.strerror or exc}") from None
    typer.echo(f"marked {len(changed)} scene(s) for rebuilding: run `srkd cache-teacher` with the "
               "cache's settings (same --teacher, --views, ... and --out) to rebuild them", err=True)
    return changed


def _score(summary: dict, data_root: Path | None, problems: list[str], teacher_miou) -> dict:  # type: ignore[no-untyped-def]
    """The cached teacher's scores, or {"skipped": why} when labels are unavailable."""
    if problems:
        return {"skipped": "the cache has problems"}
    from srkd.data.registry import get_dataset_spec
    from srkd.data.sources import open_scenes
    from srkd.errors import ConfigError, DataError

    spec = summary["spec"]
    root = Path(data_root) if data_root is not None else Path(spec["data_root"])
    try:
        dataset = get_dataset_spec(spec["dataset"])
    except ConfigError:
        return {"skipped": f"dataset {spec['dataset']!r} has no reader for ground-truth labels"}
    if dataset.num_classes != len(spec["class_names"]):
        return {"skipped": f"dataset {spec['dataset']!r} has {dataset.num_classes} classes, the cache {len(spec['class_names'])}"}
    if dataset.layout == "scannet" and not (root / spec["split"]).is_dir():
        return {"skipped": f"no labels: {root / spec['split']} does not exist (pass --data-root)"}
    try:
        scenes = open_scenes(dataset, root, spec["split"])
    except DataError as exc:
        return {"skipped": f"no labels: {exc} (pass --data-root)"}

    from srkd.cache import CacheReader

    reader = CacheReader(summary["where"], cache_bytes=0)
    recorded = {scene: reader.data_sha256(scene) for scene in reader.scene_ids}

    def labels(scene: str):  # type: ignore[no-untyped-def]
        pc = scenes.load(scene)
        if recorded.get(scene) not in (None, pc.content_sha256()):  # the data the teacher saw?
            reader.check_scene_data(scene, pc.content_sha256(), str(root))
        return pc.segment

    return teacher_miou(summary["where"], labels, dataset.num_classes)


def _print_verify(console, problems: list[str], teacher: dict) -> None:  # type: ignore[no-untyped-def]
    if problems:
        console.print(f"[red]{len(problems)} problem(s):[/red]")
        for line in problems:
            console.print(f"  - {line}", style="red", markup=False, highlight=False)
    else:
        console.print("[green]verified: every scene decodes, shapes and values are valid[/green]")
    if "skipped" in teacher:
        console.print(f"[yellow]teacher mIoU skipped: {teacher['skipped']}[/yellow]")
    else:
        console.print(
            f"cached teacher ({teacher['view']}) over {teacher['scenes']} scenes: "
            f"mIoU {100 * teacher['miou']:.2f}  mAcc {100 * teacher['macc']:.2f}  allAcc {100 * teacher['allacc']:.2f}"
        )
