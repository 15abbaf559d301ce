"""The smoke test a ``llama-server`` binary passes before fleetwatch trusts it.

It starts the binary on the model, waits for ``/health``, and completes a prompt of a few
hundred tokens, which runs the prompt-processing kernels where an unsupported instruction
would fault. The result is recorded beside the binary with the binary's SHA-256, the CPU's
flags and the kernel release, and the test runs again when any of them changes: the same
cache folder on another VM, or a kernel that stops granting a feature, is checked afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fleetwatch_testing.llama_build.build import EXTRA_OPTIONS_ENV, X86_64_CPUINFO_FLAGS
from fleetwatch_testing.llama_build.errors import ArtifactError

SMOKE_TIMEOUT_S = 120.0
#: About 300 tokens for SmolLM2's tokenizer: enough to run batched prompt processing.
SMOKE_PROMPT = (
    " ".join(
        f"Step {n}: the monitor probes instance {n} of the fleet, records whether it answered "
        "within its deadline, and tells the gateway to route around it if it did not."
        for n in range(1, 11)
    )
    + "\nSummary:"
)
SMOKE_TOKENS = 8


def cpu_facts() -> dict[str, str]:
    """The CPU's model name and feature flags, as /proc/cpuinfo lists them (first CPU)."""
    facts = {"model": "", "flags": ""}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not facts["model"]:
                facts["model"] = value
            elif key in ("flags", "Features") and not facts["flags"]:
                facts["flags"] = value
    facts["model"] = facts["model"] or platform.processor() or platform.machine()
    return facts


def fingerprint(binary_sha256: str) -> dict[str, str]:
    """What a smoke result holds for: this binary, on this CPU, under this kernel."""
    return {
        "binary_sha256": binary_sha256,
        "cpu_flags_sha256": hashlib.sha256(cpu_facts()["flags"].encode()).hexdigest(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def smoke_test(
    binary: Path, model: Path, *, timeout: float = SMOKE_TIMEOUT_S, threads: int = 2
) -> dict[str, Any]:
    """Run ``binary`` on ``model`` through one real completion; its speed, or an
    :class:`ArtifactError` saying how it died and what to do."""
    port = _free_port()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-smoke-") as work:
        log_path = Path(work) / "llama-server.log"
        argv = [
            str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--parallel", "1", "--ctx-size", "1024", "--no-webui",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ArtifactError(f"cannot start {binary} for its smoke test: {exc}") from exc
            try:
                reply = _complete(process, port, started + timeout)
            except _Died:
                raise _death_report(binary, process.returncode, log_path) from None
            except TimeoutError:
                raise ArtifactError(
                    f"{binary} did not complete its smoke test within {timeout:.0f}s "
                    f"(the machine may be overloaded; run setup again).{_log_tail(log_path)}"
                ) from None
            finally:
                _stop(process)
    timings = reply.get("timings", {})
    return {
        "passed": True,
        "prompt_tokens": reply.get("tokens_evaluated"),
        "prompt_tokens_per_s": round(float(timings.get("prompt_per_second", 0.0)), 1),
        "generated_tokens": reply.get("tokens_predicted"),
        "generation_tokens_per_s": round(float(timings.get("predicted_per_second", 0.0)), 1),
        "threads": threads,
        "seconds": round(time.monotonic() - started, 2),
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class _Died(Exception):
    """The binary exited during its smoke test."""


def _complete(process: subprocess.Popen[bytes], port: int, deadline: float) -> dict[str, Any]:
    """Wait for /health, then complete SMOKE_PROMPT; the reply."""
    base = f"http://127.0.0.1:{port}"
    while _get_status(f"{base}/health") != "ok":
        _check_alive(process, deadline)
        time.sleep(0.05)
    body = json.dumps(
        {"prompt": SMOKE_PROMPT, "n_predict": SMOKE_TOKENS, "temperature": 0, "cache_prompt": False}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback, our own child
        f"{base}/completion", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        remaining = max(1.0, deadline - time.monotonic())
        with urllib.request.urlopen(request, timeout=remaining) as response:  # noqa: S310
            reply: dict[str, Any] = json.load(response)
    except (OSError, ValueError) as exc:
        # A fault mid-prompt resets the connection: give the process a moment to be reaped.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=3)
        _check_alive(process, deadline)
        raise ArtifactError(f"the smoke test's completion failed: {exc}") from exc
    if not isinstance(reply.get("content"), str) or not reply.get("tokens_predicted"):
        raise ArtifactError(f"the smoke test's completion returned no tokens: {reply}")
    return reply


def _check_alive(process: subprocess.Popen[bytes], deadline: float) -> None:
    if process.poll() is not None:
        raise _Died
    if time.monotonic() > deadline:
        raise TimeoutError


def _get_status(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:  # noqa: S310 - loopback
            status = json.load(reply).get("status")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return status if isinstance(status, str) else None


def _death_report(binary: Path, code: int | None, log_path: Path) -> ArtifactError:
    """An error naming the signal or exit code, the log, the CPU, and what to do."""
    cpu = cpu_facts()
    if code is not None and code < 0:
        name = _signal_name(-code)
        how = f"died on {name}"
    else:
        name = ""
        how = f"exited with code {code}"
    lines = [f"llama-server {how} during its smoke test, so fleetwatch will not use it."]
    lines.append(f"binary: {binary}")
    lines.append(f"CPU: {cpu['model']} ({platform.machine()}, kernel {platform.release()})")
    lines.append(f"CPU flags: {cpu['flags'] or 'unknown'}")
    if name == "SIGILL":
        have = set(cpu["flags"].split())
        lacking = [flag for flag in X86_64_CPUINFO_FLAGS.values() if flag not in have]
        lines.append(
            "The binary uses an instruction this CPU, or the VM it runs in, does not allow."
        )
        if lacking and platform.machine().lower() in ("x86_64", "amd64"):
            off = " ".join(
                f"-DGGML_{key}=OFF" for key, flag in X86_64_CPUINFO_FLAGS.items() if flag in lacking
            )
            lines.append(f"This CPU does not list: {', '.join(lacking)}.")
            lines.append(
                f"What to do: rebuild without them: {EXTRA_OPTIONS_ENV}='{off}' make setup"
            )
        else:
            lines.append(
                f"What to do: rebuild with fewer features, e.g. {EXTRA_OPTIONS_ENV}="
                "'-DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF' make setup, "
                "and report this message to the fleetwatch developers"
            )
    else:
        lines.append(
            f"What to do: read the log below; to rebuild from scratch, remove {binary.parent} "
            "and run make setup again"
        )
    return ArtifactError("\n".join(lines) + _log_tail(log_path))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\nlast lines of its log ({log_path.name}):\n" + "\n".join(text)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
