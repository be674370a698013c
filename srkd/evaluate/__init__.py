"""Stage three, `srkd evaluate`: score students and the cached teacher on a split.

    run.py     which models and data, scoring with TTA on original points, latency
    report.py  metrics.json and report.md
    plots.py   the report's pictures (per-class IoU, confusion, a scene seen from above)
"""
