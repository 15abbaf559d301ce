"""Rich rendering of check states and verdicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.table import Table
from rich.text import Text

from fleetwatch.health import CheckState, HealthStatus, Verdict
from fleetwatch.health._check import component_type
from fleetwatch.health._scheduler import Transition

STATUS_STYLE = {
    HealthStatus.HEALTHY: "bold green",
    HealthStatus.DEGRADED: "bold yellow",
    HealthStatus.UNHEALTHY: "bold red",
    HealthStatus.UNKNOWN: "dim",
}


def status_text(status: HealthStatus) -> Text:
    """A status word in its colour."""
    return Text(status.value, style=STATUS_STYLE[status])


def transitions_table(transitions: Iterable[Transition], *, last: int = 6) -> Table:
    """The most recent status changes, newest last."""
    table = Table(title="recent changes", title_justify="left", box=None, show_header=False)
    table.add_column("time", style="dim")
    table.add_column("check")
    table.add_column("change")
    table.add_column("output", overflow="ellipsis", no_wrap=True, max_width=80)
    for t in list(transitions)[-last:]:
        change = status_text(t.before)
        change.append(" -> ", style="default")
        change.append_text(status_text(t.after))
        table.add_row(t.at.astimezone().strftime("%H:%M:%S"), t.check, change, t.output)
    return table


def checks_table(
    states: Mapping[str, CheckState], verdict: Verdict, *, title: str = "fleetwatch checks"
) -> Table:
    """One row per check, the overall verdict as the caption."""
    table = Table(title=title, title_justify="left", expand=False)
    for column, justify in (
        ("check", "left"),
        ("type", "left"),
        ("status", "left"),
        ("crit", "center"),
        ("value", "right"),
        ("runs", "right"),
        ("output", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "output")  # type: ignore[arg-type]
    for name, state in states.items():
        result = state.result
        value = ""
        if result is not None and result.observed_value is not None:
            number = result.observed_value
            shown = f"{number:.1f}" if isinstance(number, float) else str(number)
            value = f"{shown} {result.observed_unit or ''}".strip()
        output = result.output if result else "waiting for first result"
        if state.pending:
            output = f"[{state.pending}] {output}"
        table.add_row(
            name,
            component_type(state.check),
            status_text(state.status),
            "yes" if state.settings.critical else "",
            value,
            str(state.executions),
            output,
        )
    overall = Text("overall: ")
    overall.append(verdict.status.value, style=STATUS_STYLE[verdict.status])
    overall.append(f" ({verdict.status.health_json}) - {verdict.message}")
    if verdict.score is not None:
        overall.append(f" - score {verdict.score:.2f}")
    table.caption = overall
    table.caption_justify = "left"
    return table
