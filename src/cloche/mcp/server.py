"""``cloche mcp``: an MCP server on stdio that gives an agent cloche sandboxes as tools.

It is a client of a cloche HTTP server (``CLOCHE_URL``, ``CLOCHE_API_KEY``) through ``cloche.AsyncClient``;
the sandboxes, their files and their environments live there. A server error becomes a tool error whose text
starts with the server's error code (``file_not_found: ...``), so a model can tell what to fix.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Protocol, TypeAlias, TypeVar

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from cloche import __version__
from cloche.mcp.results import (
    MAX_READ_BYTES,
    CodeOutcome,
    ExecOutcome,
    FileContent,
    FileInfo,
    FileListing,
    SandboxInfo,
    code_outcome,
    exec_outcome,
    file_content,
    file_info,
    file_listing,
    sandbox_info,
)
from cloche.models import Language
from cloche.sdk.aio import AsyncClient
from cloche.sdk.errors import ClocheAPIError

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", covariant=True)
# The SDK finds the context parameter by its bare class; a parametrised Context[...] would be taken for an argument.
ToolContext: TypeAlias = Context

INSTRUCTIONS = """\
cloche runs code in isolated sandboxes that persist. A typical task:
1. create_sandbox once per task.
2. write_file for each source file, plus a manifest (requirements.txt, pyproject.toml, package.json, go.mod)
   if the code needs pinned packages.
3. exec_code with filename="main.py" (or command="..."); read output, status and exit_code.
4. Fix files with write_file and exec_code again, as often as needed: files and installed packages persist.
5. delete_sandbox when the task is done.
Dependencies install themselves: exec_code with a filename reads the project's manifest (for Python:
requirements.txt, pyproject.toml or inline script metadata) or, without one, the file's imports; it installs
what is missing once and reuses it on every later run. Do not run pip or npm install yourself.
Every exec_code run starts a fresh process (nothing stays in memory between runs); run_code instead runs Python
cells in a kernel that keeps variables between calls (like a notebook), installs what a cell imports, and returns
charts as images. The network reaches only package registries. Runs and cells stop at their wall clock (30 s
unless timeout_seconds asks for more, up to the server's maximum).
"""

SandboxId = Annotated[str, Field(description="The id create_sandbox returned (sb_...).")]
WorkspacePath = Annotated[
    str, Field(description="Path relative to the sandbox workspace, e.g. 'main.py' or 'pkg/util.py'. No '..'.")
]


@contextlib.contextmanager
def reported(url: str) -> Iterator[None]:
    """Server errors and connection failures become tool errors the model can act on."""
    try:
        yield
    except ClocheAPIError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from exc
    except httpx.TransportError as exc:
        raise ToolError(f"cloche_unreachable: cannot reach the cloche server at {url}: {exc}") from exc


def install_message(data: dict[str, Any]) -> str:
    """One line for an ``install`` stream event (shown by clients as progress)."""
    phase = str(data.get("phase", "installing"))
    names = data.get("packages") or data.get("requested") or []
    return f"{phase} {', '.join(str(n) for n in names)}".strip()


class Streamed(Protocol[R]):
    """An SDK stream event (``ExecEvent``, ``CodeEvent``): ``install`` progress, output, then the result."""

    @property
    def kind(self) -> str: ...

    @property
    def data(self) -> dict[str, Any] | None: ...

    @property
    def result(self) -> R | None: ...


async def streamed_result(events: AsyncIterator[Streamed[R]], ctx: ToolContext, what: str) -> R:
    """The stream's result; each install event on the way is reported to the client as a progress step."""
    result: R | None = None
    step = 0
    async for event in events:
        if event.kind == "install" and event.data is not None:
            step += 1
            await ctx.report_progress(step, None, install_message(event.data))
        elif event.result is not None:
            result = event.result
    if result is None:
        raise ToolError(f"stream_ended: the server closed the {what}'s stream without a result; run it again")
    return result


def build_server(client: AsyncClient | None = None, url: str | None = None) -> MCPServer[Any]:
    """The MCP server with its tools, talking to cloche through ``client`` (default: from the environment)."""
    cloche = client or AsyncClient(url)
    where = cloche.url

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await cloche.aclose()

    server: MCPServer[Any] = MCPServer(
        name="cloche", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING"
    )
    changes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    destroys = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    def tool(annotations: ToolAnnotations) -> Callable[[F], F]:
        def register(fn: F) -> F:  # the docstring, dedented, is what the model reads to choose the tool
            server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
            return fn

        return register

    @tool(changes)
    async def create_sandbox(
        language: Annotated[
            Language | None,
            Field(description="The sandbox's language; omit to let the first file run decide (by its extension)."),
        ] = None,
    ) -> SandboxInfo:
        """Create an empty sandbox and return its id. Create one per task and reuse it for every file and run:
        its files and installed packages persist across runs until delete_sandbox (or until it has been idle
        longer than its TTL; expires_at says when)."""
        with reported(where):
            box = await cloche.create(language=language)
        assert box.info is not None
        return sandbox_info(box.info)

    @tool(changes)
    async def write_file(
        sandbox_id: SandboxId,
        path: WorkspacePath,
        content: Annotated[str, Field(description="The whole new text of the file (UTF-8).")],
    ) -> FileInfo:
        """Create or overwrite one text file in the sandbox (folders are created as needed). Write manifests
        (requirements.txt, pyproject.toml) here too: the next exec_code installs what they list."""
        with reported(where):
            return file_info(await cloche.sandbox(sandbox_id).write(path, content))

    @tool(reads)
    async def read_file(sandbox_id: SandboxId, path: WorkspacePath) -> FileContent:
        """Read one file from the sandbox, e.g. something a run wrote. Text comes back as is; binary files
        come back base64-encoded. Files over 256 KiB are refused: inspect them with exec_code (head, wc, ...)."""
        with reported(where):
            data = await cloche.sandbox(sandbox_id).read(path)
        if len(data) > MAX_READ_BYTES:
            raise ToolError(f"too_large: {path} is {len(data)} bytes; read part of it with exec_code (e.g. head -c)")
        return file_content(path, data)

    @tool(reads)
    async def list_files(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Folder to list, relative to the workspace; '' is the root.")] = "",
    ) -> FileListing:
        """List the files below a folder of the sandbox, recursively (path, type, size). Installed packages
        live outside the workspace and are not listed."""
        with reported(where):
            return file_listing(await cloche.sandbox(sandbox_id).files(path))

    @tool(destroys)
    async def exec_code(
        ctx: ToolContext,
        sandbox_id: SandboxId,
        filename: Annotated[
            str | None,
            Field(
                description="A workspace file to run, by extension: .py (python3), .js/.mjs/.cjs (node), .go, .java."
            ),
        ] = None,
        command: Annotated[
            str | None, Field(description="A shell command run with /bin/sh -c in the workspace instead.")
        ] = None,
        args: Annotated[list[str] | None, Field(description="Arguments for the program (with filename).")] = None,
        stdin: Annotated[str | None, Field(description="Text fed to the program's standard input.")] = None,
        timeout_seconds: Annotated[
            float | None, Field(description="Wall clock; default 30 s, clamped to the server's maximum.")
        ] = None,
    ) -> ExecOutcome:
        """Run a file (filename=...) or a shell command (command=...) in the sandbox; give exactly one.
        Running a file first installs its dependencies when they changed (from the manifest, e.g. requirements.txt
        or pyproject.toml, or else from its imports) and reuses them afterwards; 'installed'
        lists what this run installed and 'unlisted_imports'/'unresolved_imports' what it could not. A command
        sees the packages the last file run installed. Returns output, exit_code, status and run_id; each run is
        a fresh process, files it writes persist. Runs in one sandbox take turns."""
        options = {"args": args, "stdin": stdin, "timeout_seconds": timeout_seconds}
        with reported(where):
            events = cloche.sandbox(sandbox_id).stream(filename=filename, command=command, **options)
            return exec_outcome(await streamed_result(events, ctx, "run"))

    @tool(destroys)
    async def run_code(
        ctx: ToolContext,
        sandbox_id: SandboxId,
        code: Annotated[
            str, Field(description="Python cell (IPython syntax): statements, then an expression to show.")
        ],
        context_id: Annotated[
            str | None, Field(description="A context from an earlier run_code; omitted: the sandbox's default one.")
        ] = None,
        timeout_seconds: Annotated[
            float | None, Field(description="Wall clock; past it the cell is interrupted and variables are kept.")
        ] = None,
    ) -> Annotated[CallToolResult, CodeOutcome]:
        """Run a Python cell in the sandbox's persistent kernel: variables, imports and open files stay between
        calls (x = 41, then x + 1 gives 42). Packages the cell imports are installed first ('installed'). The last
        expression's value and displayed values come back in 'results' (DataFrames with their HTML); matplotlib
        figures (plt.show() or a figure as the last value) come back as images you can look at. A failing cell
        gives 'error' with its traceback; the kernel and its variables stay. The workspace files are in the
        current folder."""
        with reported(where):
            events = cloche.sandbox(sandbox_id).stream_code(code, context_id, timeout_seconds)
            result = await streamed_result(events, ctx, "cell")
        outcome, images = code_outcome(result)
        content: list[TextContent | ImageContent] = [TextContent(type="text", text=outcome.model_dump_json(indent=1))]
        content += [ImageContent(type="image", data=data, mime_type=mime) for data, mime in images]
        return CallToolResult(content=content, structured_content=outcome.model_dump(mode="json"))

    @tool(reads)
    async def get_sbom(
        sandbox_id: SandboxId,
        run_id: Annotated[str, Field(description="The run_id exec_code returned (run_...).")],
    ) -> dict[str, Any]:
        """The software bill of materials (CycloneDX 1.6 JSON) of one run: every package its environment held,
        with versions, licenses, hashes and package URLs. Use it to report or audit what code ran with."""
        with reported(where):
            return await cloche.sandbox(sandbox_id).sbom(run_id)

    @tool(destroys)
    async def delete_sandbox(sandbox_id: SandboxId) -> str:
        """Delete the sandbox with its files and run history, stopping anything still running. Do this when the
        task is finished; the id is unusable afterwards."""
        with reported(where):
            await cloche.sandbox(sandbox_id).delete(missing_ok=False)
        return f"deleted {sandbox_id}"

    return server


def main() -> None:
    """Serve on stdin/stdout until the client closes the connection."""
    build_server().run("stdio")
