"""The RAD-DINO paper's numbers (Tables 1-7, A.1, B.1, ...) as data, for "ours vs the paper"."""

from raddino.paper.tables import (
    PaperKeyError,
    load_paper_results,
    paper_setting,
    paper_table,
    paper_value,
)

__all__ = ["PaperKeyError", "load_paper_results", "paper_setting", "paper_table", "paper_value"]
