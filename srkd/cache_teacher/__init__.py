"""Stage one, `srkd cache-teacher`: run a frozen teacher once over a split and write the cache.

    views.py   a scene's cached views (ViewSettings) and per-point targets from the teacher
    build.py   building a cache: the job (CacheJob), plan, resume, one task per scene, dask

The teacher itself is loaded by `srkd.models.teacher` (shared with `srkd distill
--online-teacher`); the store it writes is `srkd.cache`.
"""
