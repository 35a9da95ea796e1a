"""The anchored scans find exactly what a full scan finds (they only skip where nothing can be)."""

from __future__ import annotations

from conftest import document, gold_files, load_gold
from imr_extract.forms import CA_LABEL_RX, IMR_LABEL_RX, REGARDING_RX
from imr_extract.verify.census import _GUIDELINE_LABEL_ENDS
from imr_extract.verify.scan import labels_at_colons, near

LETTERS = [load_gold(g)["letter"] for g in gold_files()]


def test_labels_at_colons_equal_a_full_scan_on_every_letter() -> None:
    for name in LETTERS:
        text = document(name).text
        for rx in (CA_LABEL_RX, IMR_LABEL_RX):
            full = [m.span() for m in rx.finditer(text)]
            assert labels_at_colons(rx, text, _GUIDELINE_LABEL_ENDS) == full, name
            assert full  # every letter prints both guideline lines


def test_near_equals_a_full_scan() -> None:
    text = (
        "x\n1. Regarding the request for an MRI:\nfoo\n"
        "2. REGARDING THE REQUEST FOR physical therapy x 6:\n"
    )
    full = [m.span() for m in REGARDING_RX.finditer(text)]
    assert [m.span() for m in near(REGARDING_RX, text, "regarding", 700)] == full
    assert len(full) == 2
