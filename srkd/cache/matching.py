"""Does a teacher cache hold the data you have? Checks of a cache against loaded scenes, used
where the data meets the cache: when training starts and when it first loads each scene
(`srkd distill`), and when `srkd cache-teacher` resumes a build."""

from __future__ import annotations

from collections.abc import Sequence

from srkd.errors import CacheError
from srkd.types import PointCloud


def check_cached_scene(reader, scene_id: str, pc: PointCloud, source: str = "") -> None:
    """CacheError unless the teacher cache `reader` holds `scene_id` built from the data in `pc`
    (the scene as loaded): committed, the same point count, the same content hash
    (`PointCloud.content_sha256`; caches of schema 1 record none and are checked by count only).
    """
    if scene_id not in reader.scene_ids:
        raise CacheError(
            f"scene {scene_id!r} is not in the teacher cache at {reader.where} (or was never "
            "committed); re-run `srkd cache-teacher` on this split"
        )
    if reader.num_points(scene_id) != pc.num_points:
        raise CacheError(
            f"scene {scene_id!r}: the cache has {reader.num_points(scene_id)} points but the "
            f"dataset has {pc.num_points}; the data changed since the cache was built"
        )
    reader.check_scene_data(scene_id, pc.content_sha256(), source)


def check_cache_data(reader, scenes, scene_ids: Sequence[str], count: int = 4) -> None:
    """Before training: `check_cached_scene` on up to `count` scenes spread over `scene_ids`
    (loaded from `scenes`, a scene source of `srkd.data.sources.open_scenes`), so a cache used
    with other data fails at once; every scene is checked again when training first loads it."""
    if not scene_ids:
        return
    step = max(1, len(scene_ids) // count)
    for scene_id in list(scene_ids)[::step][:count]:
        check_cached_scene(reader, scene_id, scenes.load(scene_id), str(scenes.root))
