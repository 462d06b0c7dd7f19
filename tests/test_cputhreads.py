"""The server's OpenCV thread policy: one setting, applied once at start-up, checked."""

from __future__ import annotations

import cv2
import pytest

from mirage.app import create_app
from mirage.config import Settings, from_env


def test_the_setting_is_parsed_and_bad_values_are_refused() -> None:
    assert Settings().opencv_threads == 1
    assert from_env({"MIRAGE_OPENCV_THREADS": "2"}).opencv_threads == 2
    assert from_env({"MIRAGE_OPENCV_THREADS": "-1"}).opencv_threads == -1
    for bad in ("0", "-2", "two"):
        with pytest.raises(ValueError, match="opencv_threads"):
            from_env({"MIRAGE_OPENCV_THREADS": bad})


def test_the_server_sizes_opencvs_pool_at_start_up() -> None:
    default = cv2.getNumThreads()
    try:
        cv2.setNumThreads(-1)
        own = cv2.getNumThreads()  # OpenCV's own default here
        create_app(Settings(opencv_threads=1))
        assert cv2.getNumThreads() == 1
        create_app(Settings(opencv_threads=-1))
        assert cv2.getNumThreads() == own
        with pytest.raises(ValueError, match="opencv_threads"):
            create_app(Settings(opencv_threads=0))
    finally:
        cv2.setNumThreads(default)
