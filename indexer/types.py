"""Shared type aliases: units are part of the name."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Seconds = float
