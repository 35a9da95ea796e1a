"""The fallback: a letter of no recognised form, read by every generic rule that applies."""

from __future__ import annotations

from . import Layout, register
from ._readers import read_generic

LAYOUT = register(
    Layout(
        name="unknown",
        description="no recognised form; generic rules only",
        detect=lambda text: 0.0,
        read=read_generic,
        dedicated_reader=False,
    )
)
