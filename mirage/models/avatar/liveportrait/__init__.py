"""LivePortrait: a clean-room PyTorch implementation that loads the official checkpoints.

The package itself imports nothing, so importing it (or ``mirage.models``) does not
import torch; its modules:

- ``networks.build_network(name)``: one of ``NETWORK_NAMES`` with the official config.
- ``loader``: the official checkpoint files in the weights folder (``load_networks``,
  ``missing_weights``, ``unavailable_reason``; ``BadCheckpoint`` for a damaged one),
  torch imported only by the functions that load.
- ``keypoints``: head pose, keypoint transform, relative motion, stitching.
- ``animator.LivePortraitAnimator``: the FaceAnimator backend.
"""
