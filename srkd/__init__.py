"""srkd: offline Structure- and Relation-aware Knowledge Distillation for point clouds.

The library layer: no typer, no YAML parsing, no printing. See docs/architecture.md.
"""

__version__ = "0.1.0"
"""The version: checkpoints, caches and stages.lock record it; pyproject.toml reads it from here."""
