"""Fast piecewise-affine warping of one face image by displaced landmarks (synthetic data).

The mesh is a Delaunay triangulation of the 68 landmarks plus a ring of static anchor points
around the face and the image border. Triangulation and point location are done once per
identity: every pixel stores its triangle's three vertex indices and its barycentric
coordinates in the *rest* mesh. Per frame, the vertex displacements ``d`` (V, 2) are
interpolated with those fixed weights into a dense displacement field ``D(q)``, and the
backward map that ``cv2.remap`` needs is the fixed-point inverse of ``q -> q + D(q)``:

    p0 = q - D(q),    p(k+1) = q - D(p(k))

(``D(p)`` is read from the dense field with a bilinear remap). The iteration converges to the
exact piecewise-affine inverse wherever the displacement gradient is below 1 (no fold-over);
the error shrinks by about that gradient per step. Three steps leave under 0.4 px at the
largest motion (AU26 at E drops the chin 0.2 IOD against the static anchors below it). It
costs a small fraction of ``skimage.transform.PiecewiseAffineTransform`` (figures:
docs/measurements.md), which re-locates every pixel in the displaced mesh on every call.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

__all__ = ["MeshWarper", "anchor_points"]


def anchor_points(landmarks: np.ndarray, width: int, height: int, ring: float = 1.6,
                  n_ring: int = 16) -> np.ndarray:
    """Static mesh vertices: a ring around the face and the image border (K, 2) float32.

    The ring (``ring`` times the landmark spread around their centroid) keeps facial motion
    local to the face instead of dragging the whole background; the border points (corners
    just outside the image and edge midpoints) make the mesh cover every pixel.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    centre = lm.mean(0)
    radius = np.abs(lm - centre).max(0) * ring
    angles = np.linspace(0.0, 2.0 * np.pi, n_ring, endpoint=False)
    ring_pts = centre + np.stack([np.cos(angles) * radius[0], np.sin(angles) * radius[1]], 1)
    w, h = float(width), float(height)
    border = np.array([[-1, -1], [w / 2, -1], [w, -1], [w, h / 2], [w, h], [w / 2, h],
                       [-1, h], [-1, h / 2]], dtype=np.float64)
    # Ring points outside the image border would make slivers along it; drop them.
    inside = (ring_pts[:, 0] > 1) & (ring_pts[:, 0] < w - 2) & (ring_pts[:, 1] > 1) & (ring_pts[:, 1] < h - 2)
    return np.concatenate([ring_pts[inside], border]).astype(np.float32)


class MeshWarper:
    """Warp images of one identity by moving its landmarks; built once, applied per frame.

    ``points`` are the rest-mesh vertices (V, 2): the 68 landmarks first, then the static
    anchors from ``anchor_points``. ``warp(image, displacement)`` takes a (V, 2) or (68, 2)
    displacement (anchors then stay put) and returns the image with every vertex moved by it.
    """

    def __init__(self, points: np.ndarray, width: int, height: int, refine: int = 3) -> None:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError(f"MeshWarper: points must be (V>=3, 2), got {pts.shape}")
        self.points = pts.astype(np.float32)
        self.refine = int(refine)
        """Fixed-point refinement steps of the inverse map (each one remap of the field)."""
        self.width, self.height = int(width), int(height)
        # Coincident vertices (e.g. inner lips of a closed mouth) make qhull drop one of them;
        # a deterministic sub-pixel spread keeps every vertex in the mesh.
        spread = np.stack([np.cos(np.arange(len(pts)) * 2.399), np.sin(np.arange(len(pts)) * 2.399)], 1)
        tri = Delaunay(pts + 1e-3 * spread)
        # Point location by rasterising each triangle's index (fast, one fillConvexPoly per
        # triangle) instead of a per-pixel search; barycentrics then come from qhull's transforms.
        label = np.full((self.height, self.width), -1, np.int32)
        for k, simplex_pts in enumerate(pts[tri.simplices]):
            cv2.fillConvexPoly(label, np.round(simplex_pts * 16).astype(np.int32), k, cv2.LINE_8, shift=4)
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
        simplex = label.ravel()
        inside = simplex >= 0
        s = simplex[inside]
        t = tri.transform[s]
        b2 = np.einsum("nij,nj->ni", t[:, :2], grid[inside] - t[:, 2])
        bary = np.concatenate([b2, 1.0 - b2.sum(1, keepdims=True)], 1)
        rows = np.repeat(np.flatnonzero(inside), 3)
        cols = tri.simplices[s].ravel()
        # Sparse (pixels x vertices) interpolation matrix: the per-frame field is one product.
        self._weights = sparse.csr_matrix(
            (bary.ravel().astype(np.float32), (rows, cols)),
            shape=(self.height * self.width, len(pts)),
        )
        self.simplices = tri.simplices.copy()
        self._grid_x = xs.astype(np.float32)
        self._grid_y = ys.astype(np.float32)

    @property
    def n_vertices(self) -> int:
        """Number of mesh vertices (landmarks + anchors)."""
        return len(self.points)

    def field(self, displacement: np.ndarray) -> np.ndarray:
        """Dense (H, W, 2) float32 displacement interpolated from vertex displacements."""
        d = np.asarray(displacement, dtype=np.float32)
        if d.ndim != 2 or d.shape[1] != 2 or len(d) > self.n_vertices:
            raise ValueError(f"displacement must be (<= {self.n_vertices}, 2), got {d.shape}")
        if len(d) < self.n_vertices:
            d = np.concatenate([d, np.zeros((self.n_vertices - len(d), 2), np.float32)])
        return np.asarray(self._weights @ d, dtype=np.float32).reshape(self.height, self.width, 2)

    def maps(self, displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps (map_x, map_y) for ``cv2.remap`` that move vertices by ``displacement``."""
        dense = self.field(displacement)
        # p0 = q - D(q); p(k+1) = q - D(p(k)): fixed-point steps towards the exact inverse.
        map_x = self._grid_x - dense[..., 0]
        map_y = self._grid_y - dense[..., 1]
        for _ in range(self.refine):
            d = cv2.remap(dense, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            map_x = self._grid_x - d[..., 0]
            map_y = self._grid_y - d[..., 1]
        return map_x, map_y

    def warp(self, image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """``image`` (H, W, C) with the mesh vertices moved by ``displacement`` (pixels)."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, warper built for {self.width}x{self.height}"
            )
        map_x, map_y = self.maps(displacement)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
