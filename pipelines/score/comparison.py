"""Which scored pairs are compared with the mechanism's verdicts, and why the others are not (one owner).

A scored pair is ``compared`` when the scored file carries a decisive (a | b) verdict of the mechanism; else it is
scored but not compared, for one reason: ``tie`` (the mechanism's verdict is a tie), ``other_mechanism`` (the file
carries only other mechanisms' verdicts for it) or ``no_verdict`` (it carries none). ``ops.scored_pairs.comparison``
holds the status, ``ops.score_runs`` the counts.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.core.warehouse import connect

COMPARED = "compared"
TIE = "tie"
OTHER_MECHANISM = "other_mechanism"
NO_VERDICT = "no_verdict"
#: the reasons a scored pair is not compared, in the order they are reported, with their words
NOT_COMPARED: dict[str, str] = {
    NO_VERDICT: "without a verdict",
    TIE: "tie",
    OTHER_MECHANISM: "with only another mechanism's verdict",
}
#: ops.score_runs' count column of each reason
COUNT_COLUMNS: dict[str, str] = {NO_VERDICT: "n_no_verdict", TIE: "n_tie", OTHER_MECHANISM: "n_other_mechanism"}
DECISIVE = ("a", "b")


def items_with_other_verdicts(input_db: Path, mechanism: str) -> set[str]:
    """The items of the score file ``input_db`` that carry a verdict of a mechanism other than ``mechanism``."""
    con = connect(input_db, read_only=True)
    try:
        rows = con.execute("select distinct item_id from raw.labels where mechanism <> ?", [mechanism]).fetchall()
    finally:
        con.close()
    return {str(r[0]) for r in rows}


def comparison_status(pairs: pd.DataFrame, others: set[str]) -> pd.Series:
    """Each pair's status from its ``winner`` (the mechanism's verdict or null) and ``item_id``."""
    winner = pairs["winner"]
    status = pd.Series(NO_VERDICT, index=pairs.index, dtype=object)
    status[pairs["item_id"].astype(str).isin(others)] = OTHER_MECHANISM
    status[winner == TIE] = TIE
    status[winner.isin(DECISIVE)] = COMPARED
    return status


def counts(status: pd.Series) -> dict[str, int]:
    """The number of pairs with each status (every status present, 0 when none)."""
    found = status.value_counts()
    return {s: int(found.get(s, 0)) for s in (COMPARED, *NOT_COMPARED)}


def describe(status: pd.Series) -> str:
    """``compared with its verdicts: C; not compared: N (x without a verdict, y tie(s), z with only ...)``."""
    n = counts(status)
    not_compared = sum(n[s] for s in NOT_COMPARED)
    text = f"compared with its verdicts: {n[COMPARED]}; not compared: {not_compared}"
    parts = [f"{n[s]} {words}{'s' if s == TIE and n[s] != 1 else ''}" for s, words in NOT_COMPARED.items() if n[s]]
    return text + (f" ({', '.join(parts)})" if parts else "")
