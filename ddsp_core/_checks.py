"""Argument checks shared by ddsp_core's public functions: one clear one-line ``ValueError`` per bad argument."""

from __future__ import annotations

import numbers

__all__ = ["check_positive_int"]


def check_positive_int(**sizes: int) -> None:
    """Raise ``ValueError`` naming the first keyword whose value is not a positive integer.

    Parameters
    ----------
    **sizes
        ``name=value`` pairs, e.g. ``hop_size=hop_size``. Python and NumPy integers pass when > 0; ``bool``, floats
        (even ``16000.0``) and anything else do not.

    Examples
    --------
    >>> check_positive_int(hop_size=64, sample_rate=16000)
    >>> check_positive_int(hop_size=0)
    Traceback (most recent call last):
    ...
    ValueError: hop_size must be a positive integer, got 0
    """
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
