"""Folder runs on a Ray cluster (``i2s reconstruct DIR --engine ray``): the same outputs, resume and error rows as a
local folder run, computed by a pool of workers that each load the generator and VGG once.

Ray is an optional extra (``pip install image2stylegan[cluster]``); nothing here imports it until a run starts.
"""

from .ray_folder import ClusterSpec, ray_available, run_folder_on_ray

__all__ = ["ClusterSpec", "ray_available", "run_folder_on_ray"]
