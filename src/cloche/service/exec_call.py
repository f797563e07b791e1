"""One exec as it travels from an API route through a node agent (in process or over HTTP) to the exec service:
who asks, in which sandbox, what to run, and where its output and install progress go as they happen.

Every layer passes this one record on unchanged, so a field added here reaches all of them; only the agent wire
(``agent/wire.py``) takes it apart, into a path, a header and a JSON body, and puts it back together.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloche.jail.runner import OutputCallback
from cloche.models import ExecRequest
from cloche.service.deps import Progress


@dataclass(frozen=True)
class ExecCall:
    tenant: str
    sandbox_id: str
    request: ExecRequest
    on_output: OutputCallback | None = None  # each chunk of stdout/stderr as the program writes it
    on_progress: Progress | None = None  # each install event while the dependencies are prepared
