"""Stage three, `srkd evaluate`: score students and the cached teacher on a split.

    config.py   EvalConfig: the command's settings (the only home of their defaults)
    run.py      the evaluation: scenes x models (and the cached teacher) through srkd.scoring
    models.py   checkpoints loaded as EvalModel rows; their names, kinds and class checks
    data.py     which dataset, root and split; the teacher cache's checks
    latency.py  the latency column (batch 1, no TTA)
    report.py   metrics.json and report.md
    plots.py    the report's pictures (per-class IoU, confusion, a scene seen from above)
"""
