"""Label every point of a .ply scan with an exported srkd student: numpy + onnxruntime only.

    srkd export --checkpoint runs/student/model.pt --out deploy        # once, where srkd is installed
    python examples/label_ply.py deploy scene.ply scene.labels.npy     # anywhere: no torch, no spconv

The scan is a PLY mesh (e.g. ScanNet's *_vh_clean_2.ply) or point cloud with uchar red/green/blue
vertex colours. Normals: the file's own, else area-weighted face normals of a mesh, else PCA over
16 neighbours. Writes int64 (N,) class ids in vertex order and prints the class histogram.
"""

import sys

import numpy as np

from srkd.data.normals import pca_normals
from srkd.data.scannet.ply import read_mesh, vertex_normals
from srkd.runtime import load_student

model_dir, ply_path, out_path = sys.argv[1:4]
student = load_student(model_dir)
mesh = read_mesh(ply_path)
normal = mesh.normals
if normal is None:
    normal = vertex_normals(mesh.vertices, mesh.faces) if len(mesh.faces) else pca_normals(mesh.vertices, 16)
labels = student.label(mesh.vertices, color=mesh.colors, normal=normal)
np.save(out_path, labels)
classes = student.spec.classes
for k in np.argsort(np.bincount(labels, minlength=len(classes)))[::-1][:5]:
    print(f"{classes[k]:>16}: {np.mean(labels == k):6.1%}")
