"""`mmcore bench`: method x dataset x seed grids, run resumably in one process, aggregated into one
results table (mean ± std over seeds, gains over the baseline method, MultiBench robustness, cost).

grid.py (GRID.toml, strict) -> runner.py (cells, resumable) -> robustness.py (corrupted evaluation)
and cost.py (side-by-side step timing, timing.py) -> aggregate.py and tables.py (CSV and Markdown).
This package imports nothing heavy at import time: the CLI adds its command from command.py.
"""
