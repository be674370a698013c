"""Stage one, `srkd cache-teacher`: run a frozen teacher once over a split and write the cache.

    config.py   the command's settings (CacheTeacherConfig) and the job they build (CacheJob)
    views.py    a scene's cached views (ViewSettings) and the cache settings (CacheSpec) they make
    targets.py  per-point targets of every view from the teacher (log mean probability, features)
    plan.py     validate, create or resume the cache root, list the scenes to compute
    worker.py   per process: the teacher and the write-behind thread (SceneWorker), scene tasks
    build.py    build_cache: the lock, the plan, the tasks in-process or on dask, the report

The teacher itself is loaded by `srkd.models.teacher` (shared with `srkd distill
--online-teacher`); the store it writes is `srkd.cache`.
"""
