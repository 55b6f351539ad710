"""From a 96×96 CarRacing frame to the model's input size.

Rows 84–95 of the frame are the dashboard (speed, ABS and steering bars); they
are dropped, and the 84×96 picture that is left is resized with bilinear
filtering. Frames stay uint8 on disk; scaling to [0, 1] happens only when a
batch is fed to the network.
"""
import numpy as np
from PIL import Image

DASHBOARD_ROW = 84


def parse_size(text):
    """'64x64' → (64, 64) as (height, width)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HEIGHTxWIDTH, e.g. 64x64, got {text!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return h, w


def preprocess(frame, size=(64, 64)):
    """(96, 96, 3) uint8 frame → (H, W, 3) uint8: dashboard cut, bilinear resize."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] <= DASHBOARD_ROW:
        raise ValueError(f"preprocess expects a uint8 (H>{DASHBOARD_ROW}, W, 3) frame, "
                         f"got {frame.dtype} {frame.shape}")
    h, w = size
    img = Image.fromarray(frame[:DASHBOARD_ROW])
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.uint8)
