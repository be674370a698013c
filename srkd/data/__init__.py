"""Data path: scene readers, synthetic scenes, transforms, voxelisation, collation."""
