"""`srkd predict`: label every point of new scans with a trained model.

    config.py  PredictConfig: the command's settings (the only home of their defaults)
    inputs.py  reading scans: Pointcept scene folders, .npy folders, PLY meshes and point clouds
    run.py     loading the model, labelling with the evaluation protocol, writing the outputs
"""
