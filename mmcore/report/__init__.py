"""`mmcore report`: figures (matplotlib, the optional `plots` extra, imported only when drawing) and
one Markdown/HTML page for a run directory or a bench directory. command.py adds the command;
page.py builds the page from curves.py (metrics.jsonl), plots.py and document.py."""
