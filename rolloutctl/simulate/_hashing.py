"""Randomness that uses no generator draw: bijective integer mixers and what is built on them.

Sticky assignment and stable ids must not depend on how many numbers the seeded generator has
handed out, or adding a draw to one scenario would reshuffle every user. So unit ids, canary
buckets and per-key uniforms come from hashing, and the generator is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[Any]
_F64 = npt.NDArray[np.float64]

_U64 = np.uint64


def _splitmix64(x: _Array) -> _Array:
    """A bijective 64-bit mixer: distinct inputs give distinct, well-spread outputs."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def _lowbias32(x: _Array) -> _Array:
    """A bijective 32-bit mixer, so unit ids drawn from distinct indices never collide."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint32)
        z = (z ^ (z >> np.uint32(16))) * np.uint32(0x7FEB352D)
        z = (z ^ (z >> np.uint32(15))) * np.uint32(0x846CA68B)
        return z ^ (z >> np.uint32(16))


def _unit_bucket(unit_values: _Array) -> _F64:
    """Map a unit's 32-bit id to [0, 100); depends on the id alone, so it is sticky."""
    mixed = _splitmix64(unit_values.astype(np.uint64) ^ _U64(0x5EED0F0CA2A4F00D))
    return (mixed >> _U64(11)).astype(np.float64) * (100.0 / 2.0**53)


def _hash_uniform(keys: _Array, salt: int) -> _F64:
    """A uniform in [0, 1) per key that uses no generator draw, so adding one to a scenario
    leaves every other draw where it was."""
    mixed = _splitmix64(keys.astype(np.uint64) ^ _U64(salt))
    return (mixed >> _U64(11)).astype(np.float64) * 2.0**-53
