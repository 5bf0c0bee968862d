"""What every LLM command reports about its client run: dry run, budget stop, run id, usage and failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.llm.types import RunStats

if TYPE_CHECKING:
    from pipelines.llm.client import LLMClient

BUDGET_NOTE = "budget reached: stopped before exceeding it; finished work is saved, re-run to continue"


@dataclass(kw_only=True)
class LLMRunReport:
    """The base of a command's report; the command adds its own counts and its ``lines()``."""

    dry_run: bool = False
    budget_stopped: bool = False
    run_id: str | None = None
    stats: RunStats = field(default_factory=RunStats)
    failures: list[str] = field(default_factory=list)  # "<item> <call>: <error>" per failed call

    def record(self, client: LLMClient) -> None:
        """Take the client's stats, budget stop and run id (none in a dry run) once it has run."""
        self.stats = client.stats
        self.budget_stopped = client.budget_stopped
        self.run_id = None if client.dry_run else client.run_id

    def usage_line(self) -> str:
        return f"{self.stats.usage()}  [run {self.run_id}]"

    def closing_lines(self) -> list[str]:
        """The usage line and, when the budget stopped the run, a note saying so."""
        return [self.usage_line(), *([BUDGET_NOTE] if self.budget_stopped else [])]
