"""``/v1/stream``'s frame rate limit: a client at the limit keeps every frame despite jitter; one
sending twice as fast gets about half through; a burst of a second's worth passes."""

from __future__ import annotations

import numpy as np


def _passed(fps_sent: float, limit: float, seconds: float = 10.0, jitter: float = 0.004) -> float:
    from workflows.serve.streaming import FrameRate

    rng = np.random.default_rng(0)
    times = np.arange(0, seconds, 1 / fps_sent) + rng.uniform(-jitter, jitter, int(np.ceil(seconds * fps_sent)))
    rate = FrameRate(limit, float(times[0]))
    return float(np.mean([rate.allow(float(t)) for t in np.sort(times)]))


def test_a_camera_at_the_limit_keeps_every_frame():
    assert _passed(30, 30) == 1.0
    assert _passed(15, 30) == 1.0


def test_twice_the_limit_gets_about_half_through():
    assert 0.5 <= _passed(60, 30) <= 0.56  # the first second's burst, then 30 of 60


def test_a_burst_of_one_seconds_frames_passes_then_the_rest_waits():
    from workflows.serve.streaming import FrameRate

    rate = FrameRate(30, 0.0)
    assert all(rate.allow(0.0) for _ in range(30)) and not rate.allow(0.0)
    assert rate.allow(1 / 30)  # a frame's worth later, one more
