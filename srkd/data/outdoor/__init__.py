"""Outdoor lidar datasets: nuScenes-lidarseg (16 classes) and SemanticKITTI (19 classes).

    classes          class names, colours, raw-id -> label maps, SemanticKITTI splits
    nuscenes_splits  the official nuScenes scene splits (data)
    nuscenes_tables  the nuScenes JSON tables, indexed for LIDAR_TOP; pose transforms
    nuscenes         NuScenesScenes: one scene per annotated keyframe (+ optional sweeps)
    semantickitti    SemanticKittiScenes: one scene per scan
    formats          checked readers and atomic writers of the binary files
    writers          write_nuscenes / write_semantickitti: the releases' exact formats from arrays
Nothing is imported here, so `import srkd.data.outdoor.classes` stays light.
"""
