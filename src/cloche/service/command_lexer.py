"""Split a shell command into its simple commands, with where each sits in the text, as ``/bin/sh`` reads it.

Words are lexed by ``shlex`` in POSIX mode (quote removal, escapes). ``shlex`` does not say where a token starts
in the text, and the server needs exactly that to replace the package installs it performs itself; so the top
level (the operators between simple commands, comments and redirections) is found by the quote-aware scan below,
and each simple command's text, redirections blanked out, is handed to ``shlex.split``.

Anything beyond simple commands joined by ``&&``, ``||``, ``;``, ``|``, ``&`` and newlines is *not understood*:
subshells and grouping, command substitution, here-documents, compound commands (``if``, ``for``, ...) and
functions. ``split`` returns None for those, and the command then runs exactly as typed.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from cloche.jail.profile import SANDBOX_DIR as WORKSPACE

# Reserved words that open compound commands: a command starting with one is not a simple command.
COMPOUND_WORDS = frozenset({"if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case", "esac",
                            "select", "function", "{", "}", "!", "[[", "]]"})  # fmt: skip
EXPANSION = re.compile(r"[$*?\[\]{}~]")  # a word the shell would still expand: not a literal path or name
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SPACE = " \t"
_WORD_END = " \t\n;&|<>()"


class NotUnderstood(Exception):
    """The command uses shell structure beyond simple commands."""


@dataclass(frozen=True)
class SimpleCommand:
    """One simple command: leading ``NAME=value`` assignments, then its words (quotes removed)."""

    assignments: tuple[str, ...]
    words: tuple[str, ...]
    start: int  # span of the command in the text, redirections included; operators, comments, blanks excluded
    end: int
    after: str  # the operator that follows it: "&&", "||", ";", "|", "&", "\n", or "" at the end
    redirections: tuple[str, ...] = ()  # as typed ("2>&1", "> out.txt"), in order


def split(command: str) -> list[SimpleCommand] | None:
    """The simple commands of ``command`` in order, or None when it is more than simple commands."""
    try:
        return list(_Scanner(command).commands())
    except (NotUnderstood, ValueError):  # ValueError: shlex found an unbalanced quote
        return None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def commands(self) -> list[SimpleCommand]:
        out: list[SimpleCommand] = []
        while True:
            start, end, comments, redirections, operator = self._segment()
            segment = _blank(self.text, start, end, comments + redirections)
            words = shlex.split(segment, posix=True, comments=False)
            if words:
                count = next((n for n, w in enumerate(words) if not _ASSIGNMENT.match(w)), len(words))
                if count < len(words) and words[count] in COMPOUND_WORDS:
                    raise NotUnderstood(words[count])
                typed = tuple(self.text[a:b] for a, b in redirections)
                uncommented = _blank(self.text, start, end, comments)
                span_end = end - (len(uncommented) - len(uncommented.rstrip()))
                out.append(SimpleCommand(tuple(words[:count]), tuple(words[count:]), start, span_end, operator, typed))
            elif operator not in ("", "\n", ";"):
                raise NotUnderstood("an operator with no command before it")
            if not operator:
                return out

    def _segment(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]], str]:
        """Scan one simple command: (start, end, comment spans, redirection spans, operator after it)."""
        text = self.text
        while self.i < len(text) and text[self.i] in _SPACE:
            self.i += 1
        start = self.i
        comments: list[tuple[int, int]] = []
        redirections: list[tuple[int, int]] = []
        while self.i < len(text):
            c = text[self.i]
            two = text[self.i : self.i + 2]
            if c in "'\"\\" or c == "$" or c == "`":
                self.i = self._word_part(self.i)
            elif c == "#" and (self.i == 0 or text[self.i - 1] in _SPACE + "\n;&|"):
                end = text.find("\n", self.i)
                comments.append((self.i, len(text) if end < 0 else end))
                self.i = len(text) if end < 0 else end
            elif c in "()":
                raise NotUnderstood("subshell or grouping")
            elif c in "<>" or two in ("&>",):
                redirections.append(self._redirection(start))
            elif two in ("&&", "||") or c in ";|&\n":
                if two in (";;", "|&", ";&"):
                    raise NotUnderstood(two)
                operator = two if two in ("&&", "||") else c
                end = self.i
                self.i += len(operator)
                return start, end, comments, redirections, operator
            else:
                self.i += 1
        return start, len(text), comments, redirections, ""

    def _word_part(self, i: int) -> int:
        """Index just past the quoted string, escape or expansion starting at ``i``."""
        text = self.text
        c = text[i]
        if c == "\\":
            return i + 2
        if c == "`" or text.startswith("$(", i):
            raise NotUnderstood("command substitution")
        if c == "$":
            return i + 1
        if c == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise NotUnderstood("unbalanced quote")
            return close + 1
        j = i + 1  # a double-quoted string: escapes and expansions inside it
        while j < len(text) and text[j] != '"':
            if text[j] == "\\":
                j += 2
            elif text[j] == "`" or text.startswith("$(", j):
                raise NotUnderstood("command substitution")
            else:
                j += 1
        if j >= len(text):
            raise NotUnderstood("unbalanced quote")
        return j + 1

    def _redirection(self, segment_start: int) -> tuple[int, int]:
        """Span of the redirection at ``self.i`` (with a file-descriptor number glued before it) and its target."""
        text = self.text
        begin = self.i
        while begin > segment_start and text[begin - 1].isdigit():
            begin -= 1
        if begin > segment_start and text[begin - 1] not in _SPACE:
            begin = self.i  # digits inside a word ("file2>x"): the word stays, only the operator goes
        if text.startswith("<<", self.i) and not text.startswith("<<<", self.i):
            raise NotUnderstood("here-document")
        j = self.i
        while j < len(text) and text[j] in "<>&|":
            j += 1
        if text[j - 1] == "&" and j < len(text) and (text[j].isdigit() or text[j] == "-"):
            j += 1  # ">&2", "<&-"
            while j < len(text) and text[j].isdigit():
                j += 1
            self.i = j
            return begin, j
        while j < len(text) and text[j] in _SPACE:
            j += 1
        if j >= len(text) or text[j] in "\n;&|<>()":
            raise NotUnderstood("a redirection without a target")
        while j < len(text) and text[j] not in _WORD_END:
            j = self._word_part(j) if text[j] in "'\"\\$`" else j + 1
        self.i = j
        return begin, j


def _blank(text: str, start: int, end: int, blanks: list[tuple[int, int]]) -> str:
    """``text[start:end]`` with the given spans replaced by spaces (so shlex never sees redirections)."""
    chars = list(text[start:end])
    for a, b in blanks:
        for k in range(max(a, start), min(b, end)):
            chars[k - start] = " "
    return "".join(chars)


def in_workspace(cwd: str, path: str) -> str | None:
    """Workspace-relative normal form of ``path`` typed in ``cwd`` ("" is the root), or None outside it."""
    if path.startswith("/"):
        if path != WORKSPACE and not path.startswith(WORKSPACE + "/"):
            return None
        path, cwd = path[len(WORKSPACE) :].lstrip("/"), ""
    joined = posixpath.normpath(posixpath.join(cwd, path))
    if joined in (".", ""):
        return ""
    return None if joined == ".." or joined.startswith("../") else joined


def options(text: str) -> frozenset[str]:
    """A set of option names written as one space-separated string."""
    return frozenset(text.split())
