"""Faces in ordinary photos: MTCNN landmarks, FFHQ alignment and paste-back.

Typical use::

    from image2stylegan.align import load_photo, load_mtcnn, detect_faces, select_face, align_face, paste_back

    photo = load_photo("photo.jpg")                        # uint8 [H, W, 3], full resolution (notices: warnings)
    faces = detect_faces(photo, load_mtcnn())              # largest first
    aligned = align_face(photo, select_face(faces, 0), 1024)
    ...                                                    # embed / edit aligned.image (uint8 [1024, 1024, 3])
    merged = paste_back(photo, edited, aligned.transform)  # uint8 [H, W, 3]; untouched outside the face

``aligned.transform.to_dict()`` is what to store in an output's metadata; ``AlignTransform.from_dict`` restores it.
Coordinates are ``(x, y)`` pixel centres throughout (see :mod:`.photo`).
"""

from .ffhq import AlignedFace, AlignTransform, align_face, align_photo, canonical_points, ffhq_quad, key_points
from .mtcnn import LANDMARK_NAMES, MTCNN, Face, detect_faces, load_mtcnn, order_faces, select_face
from .paste import paste_back, paste_back_to_file, paste_mask
from .photo import as_rgb_uint8, load_photo

__all__ = [
    "LANDMARK_NAMES",
    "MTCNN",
    "AlignTransform",
    "AlignedFace",
    "Face",
    "align_face",
    "align_photo",
    "as_rgb_uint8",
    "canonical_points",
    "detect_faces",
    "ffhq_quad",
    "key_points",
    "load_mtcnn",
    "load_photo",
    "order_faces",
    "paste_back",
    "paste_back_to_file",
    "paste_mask",
    "select_face",
]
