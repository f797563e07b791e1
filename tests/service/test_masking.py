"""Masking secrets in output, whole and streamed in pieces cut anywhere."""

from __future__ import annotations

import base64
from urllib.parse import quote

from cloche.service.masking import MASK, Masker

SECRET = "sk-live/4f+9=a&b c"
TEXT = f"plain {SECRET} b64 {base64.b64encode(SECRET.encode()).decode()} url {quote(SECRET, safe='')} end\n"
MASKED = "plain *** b64 *** url *** end\n"


def test_every_form_is_masked() -> None:
    assert Masker([SECRET]).mask(TEXT) == MASKED
    assert Masker([]).mask(TEXT) == TEXT and not Masker([])


def test_a_value_split_across_pieces_is_masked_wherever_the_cut_falls() -> None:
    masker = Masker([SECRET])
    for cut in range(len(TEXT) + 1):
        for second in range(cut, len(TEXT) + 1):
            stream = masker.stream()
            pieces = [stream.feed(TEXT[:cut]), stream.feed(TEXT[cut:second]), stream.feed(TEXT[second:])]
            shown = "".join(pieces) + stream.flush()
            assert shown == MASKED, (cut, second, pieces)
            # What was shown before the end never held a value's first characters beyond the hold-back.
            assert SECRET[:6] not in "".join(pieces[:2])


def test_text_without_secrets_is_passed_on_at_once_except_the_hold_back() -> None:
    masker = Masker([SECRET])
    assert masker.longest == len(quote(SECRET, safe=""))  # the longest form here
    stream = masker.stream()
    shown = stream.feed("x" * 100)
    assert shown == "x" * (100 - (masker.longest - 1))
    assert shown + stream.flush() == "x" * 100
    assert MASK == "***"
