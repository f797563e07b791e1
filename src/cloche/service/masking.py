"""Masking secrets in what a run prints: every form of every value becomes ``***``.

A value is masked as written, base64-encoded (standard and URL-safe, with and without padding) and
URL-encoded, as CI systems mask secrets in logs. This guards against accidents (a program that prints its
configuration), not against code that means to leak: any other encoding gets through.

Streamed output arrives in pieces, so a value may be split across two of them: ``StreamMasker`` holds back
the last ``len(longest form) - 1`` characters of each piece until the next one (or the end) shows whether
they start a value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"


def forms(value: str) -> set[str]:
    """The spellings of ``value`` that are masked."""
    raw = value.encode()
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {value, quote(value, safe=""), quote_plus(value), *encoded, *(e.rstrip("=") for e in encoded)} - {""}


class Masker:
    """Masks a fixed set of values in whole texts; ``Masker(())`` masks nothing."""

    def __init__(self, values: Iterable[str]) -> None:
        spellings = sorted({f for v in values if v for f in forms(v)}, key=len, reverse=True)
        self.longest = len(spellings[0]) if spellings else 0
        self._pattern = re.compile("|".join(map(re.escape, spellings))) if spellings else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)

    def mask_opt(self, text: str | None) -> str | None:
        return None if text is None else self.mask(text)

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks one stream fed in pieces; what ``feed`` returns is safe to show, ``flush`` gives the rest."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._pending = ""

    def feed(self, piece: str) -> str:
        pattern = self._masker._pattern
        if pattern is None:
            return piece
        text = self._pending + piece
        cut = max(0, len(text) - (self._masker.longest - 1))  # beyond it, a value may still be starting
        out: list[str] = []
        at = 0
        for match in pattern.finditer(text):
            if match.start() >= cut:
                break
            out += [text[at : match.start()], MASK]
            at = match.end()
            cut = max(cut, at)  # a value that runs past the cut is masked whole now
        out.append(text[at:cut])
        self._pending = text[cut:]
        return "".join(out)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return self._masker.mask(rest)
