"""Live AU detection: a camera, a stream or a file answered frame by frame, as the frames come.

``facsflow live --source 0|FILE|rtsp://... [--ensemble DIR] [--out rows.csv|rows.parquet] [--show] [--no-realtime]``
(no ``--ensemble``: the built-in detector; no Ray cluster: everything runs in this process)

Frames come from a capture thread that keeps only the newest one (``components.frame_source``):
when answering falls behind the source, frames are dropped, counted in the status line every
``status_seconds`` and at the end, never queued. A file plays at its own fps (``--realtime``,
the default) or as fast as it is answered (``--no-realtime``: no frame dropped). Each frame is
answered by ``components.live.LiveSession``: the same tracking, members and combination as
``facsflow predict``, causal (past frames only: trailing smoothing, backward landmark
differences). Rows (the columns of ``components.au_detector``) go to ``--out`` as they come, CSV
appended and flushed per frame, or Parquet one row group per ``parquet_rows`` rows (readable
once the run ends, Ctrl-C included); without ``--out``, CSV on stdout. ``--show`` draws boxes,
face ids and the top AUs as bars on an OpenCV window (q or Esc stops).

Budget: one face, the built-in, one CPU core answers a 30 frames/s source with room to spare
by default: the detector runs every ``detect_every`` (12) frames on a half-size frame and the
face is followed from its landmarks between (re-detected at once when lost), rows go to the CSV
without a DataFrame, and each face's running neutral costs the same at any track length
(figures and the per-step table: ``benchmarks/live.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

log = logging.getLogger("facsflow.live")

__all__ = ["LiveConfig", "RowSink", "draw_rows", "run_live", "build_parser", "main"]


@dataclass
class LiveConfig:
    """One live run."""

    source: str = "0"
    """Camera index (0, 1, ...), stream URL (rtsp://, http://) or video file."""
    ensemble: str = ""
    """Ensemble folder (ensemble.json); empty: the built-in detector."""
    out: str = ""
    """Rows file, appended as frames are answered: .csv or .parquet; empty: CSV on stdout."""
    show: bool = False
    """Draw boxes, face ids and the top AUs as bars on an OpenCV window."""
    realtime: bool = True
    """Play a file at its own fps, dropping frames when answering falls behind (cameras and
    streams always run at their own pace); off: every frame of a file is answered."""
    smooth_window: int = 5
    """Frames of the trailing moving mean over each face's probabilities (1: none)."""
    detector: Literal["dlib", "mtcnn", "retinaface"] | None = None
    """Face detector (default: the ensemble's recorded one)."""
    policy: Literal["tracked", "largest", "all"] = "tracked"
    """Faces followed: one ('tracked', 'largest') or every face ('all')."""
    detect_every: int = 12
    """Run the detector every this many answered frames and follow the face from its previous
    landmarks between (as OpenFace does); a face lost between detections (an implausible refit)
    is detected again on that frame, and with no face followed every frame detects, so a face
    that appears is found at once. 12 (``predict``'s plan: 6) keeps live within one core at
    30 frames/s (``benchmarks/live.py``); 0: the plan's."""
    detect_scale: float = 0.5
    """Resize factor of the frame before detection: 0.5 (``predict``'s plan: 1.0) costs a
    quarter and still finds faces of ~32 px and up at full size (RetinaFace; dlib: ~80 px); 0: the plan's."""
    max_frames: int = 0
    """Stop after this many frames read from the source (0: until it ends or Ctrl-C)."""
    status_seconds: float = 5.0
    """Seconds between status lines (answered, dropped, fps)."""
    parquet_rows: int = 64
    """Rows per Parquet row group written."""

    def __post_init__(self) -> None:
        if self.smooth_window < 1:
            raise ValueError(f"smooth_window must be >= 1, got {self.smooth_window}")
        if self.out and Path(self.out).suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"out must end in .csv or .parquet, got {self.out!r}")

    def faces(self) -> dict[str, Any]:
        """Face pipeline fields over the ensemble's recorded ones."""
        fields: dict[str, Any] = {"policy": self.policy}
        if self.detector:
            fields["detector"] = self.detector
        if self.detect_every:
            fields["detect_every"] = self.detect_every
        if self.detect_scale:
            fields["detect_scale"] = self.detect_scale
        return fields


class RowSink:
    """Rows as they come: CSV appended and flushed per frame (``out`` .csv, or stdout when
    empty), or Parquet written one row group at a time (.parquet)."""

    def __init__(self, out: str, aus: Sequence[int], intensity: bool, parquet_rows: int = 64) -> None:
        from components.au_detector import openface_columns

        self.aus, self.intensity, self.parquet_rows = list(aus), intensity, parquet_rows
        self.columns = openface_columns(self.aus, intensity)
        self.parquet = out.lower().endswith(".parquet")
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        self._writer: Any = None
        if self.parquet:
            self._file = None
        else:
            self._file = open(out, "w", newline="") if out else sys.stdout
            self._file.write(",".join(self.columns) + "\n")
        self._out = out

    def write(self, rows: list[dict[str, Any]]) -> None:
        from components.au_detector import openface_csv

        self.rows += len(rows)
        if not self.parquet:
            self._file.write(openface_csv(rows, self.aus, self.intensity))
            self._file.flush()
            return
        self._pending += rows
        if len(self._pending) >= self.parquet_rows:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from components.au_detector import rows_to_openface

        if not self._pending:
            return
        table = pa.Table.from_pandas(rows_to_openface(self._pending, self.aus, self.intensity), preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._out, table.schema)
        self._writer.write_table(table)
        self._pending = []

    def close(self) -> None:
        if self.parquet:
            self._flush_parquet()
            if self._writer is not None:
                self._writer.close()
        elif self._file is not sys.stdout:
            self._file.close()


def draw_rows(bgr: np.ndarray, rows: Sequence[dict[str, Any]], top: int = 5) -> np.ndarray:
    """``bgr`` with each answered face's box and id, and its ``top`` AUs as bars beside the box."""
    import cv2

    out = bgr.copy()
    for r in rows:
        if not r.get("success"):
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in r["box"])
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 200, 0), 2)
        cv2.putText(out, f"id {r['face_id']}", (x0, max(y0 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1)
        best = sorted(r["probs"].items(), key=lambda kv: -kv[1])[:top]
        for k, (au, p) in enumerate(best):
            y = y0 + 4 + 16 * k
            cv2.putText(out, au, (x1 + 6, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
            cv2.rectangle(out, (x1 + 46, y + 2), (x1 + 46 + int(80 * p), y + 12), (0, 160, 255), -1)
    return out


def run_live(cfg: LiveConfig, on_rows: "Callable[[list[dict[str, Any]]], None] | None" = None) -> dict[str, Any]:
    """Answer ``cfg.source`` until it ends (or ``max_frames``, or q/Esc on the window); return
    the counts: ``captured``, ``answered``, ``dropped`` (and ``dropped_pct``), ``seconds``, ``fps``
    (answered per second). ``on_rows(rows)`` sees each frame's rows after they are written."""
    from components.au_detector import Detector
    from components.frame_source import FrameSource
    from components.live import LiveSession
    from components.predictor import Predictor

    predictor = Predictor.from_manifest(cfg.ensemble, "cpu", cfg.faces(), cfg.smooth_window)
    session = LiveSession.of(predictor, cfg.smooth_window)
    sink = RowSink(cfg.out, predictor.aus, Detector(predictor).has_intensity, cfg.parquet_rows)
    answered, t0 = 0, time.perf_counter()
    status_at = t0 + cfg.status_seconds
    try:
        with FrameSource(cfg.source, cfg.realtime, cfg.max_frames) as source:
            while (item := source.get()) is not None:
                rows = session.push(item.rgb, item.frame, item.timestamp)
                answered += 1
                sink.write(rows)
                if on_rows is not None:
                    on_rows(rows)
                if cfg.show and _show(item.rgb, rows):
                    break
                if time.perf_counter() >= status_at:
                    status_at += cfg.status_seconds
                    log.info("live: %s", _status(answered, source.dropped, time.perf_counter() - t0))
            captured, dropped = source.captured, source.dropped
    finally:
        sink.close()
        if cfg.show:
            import cv2

            cv2.destroyAllWindows()
    seconds = time.perf_counter() - t0
    return {"captured": captured, "answered": answered, "dropped": dropped,
            "dropped_pct": round(100.0 * dropped / max(captured, 1), 2), "seconds": round(seconds, 3),
            "fps": round(answered / max(seconds, 1e-9), 2), "rows": sink.rows}


def _status(answered: int, dropped: int, seconds: float) -> str:
    seen = answered + dropped
    return (f"{answered} frames answered, {dropped} dropped ({100.0 * dropped / max(seen, 1):.1f}%), "
            f"{answered / max(seconds, 1e-9):.1f} frames/s")


def _show(rgb: np.ndarray, rows: list[dict[str, Any]]) -> bool:
    """Draw the frame; True when the viewer asked to stop (q or Esc)."""
    import cv2

    cv2.imshow("facsflow live", draw_rows(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), rows))
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``LiveConfig`` (``--source``, ``--out``, ``--show``, ``--no-realtime``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(LiveConfig, "facsflow live", ray=False,
                        description="Answer a camera, a stream or a video file frame by frame as it plays.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import configure_logging, torch_single_thread
    from workflows.core.stage_cli import stage_config

    args = build_parser().parse_args(argv)
    configure_logging()
    torch_single_thread()
    cfg: LiveConfig = stage_config(args)
    res = run_live(cfg)
    log.info("live: done: %s; %d captured, %d rows%s", _status(res["answered"], res["dropped"], res["seconds"]),
             res["captured"], res["rows"], f" in {cfg.out}" if cfg.out else "")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
