"""Procedural datasets: furnished rooms in the ScanNet layout and simulated outdoor lidar drives.

    rooms          generate_dataset / generate_scene: the synthetic ScanNet-format dataset
    room           room layout: floor, walls, doors, windows, curtains, furniture groups
    groups         furniture groups; furniture, fixtures: the pieces; materials: labels, palettes
    geometry       analytic surfaces sampled as points with normals, hidden-surface removal
    lidar          a rotating multi-beam lidar ray-cast against a procedural street (lidar_world)
    lidar_dataset  simulated drives written in the nuScenes / SemanticKITTI release formats
Nothing is imported here; import the module you need.
"""
