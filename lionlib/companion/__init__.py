"""The notebook pipeline of the paper companion: repository paths (`paths`), figures and claims of one
notebook (`report`, `stats`), parameters cells (`params`), results folders, run records and the
manifest (`manifest`), the papermill driver that runs them all (`python -m lionlib.companion.reproduce`),
the same-numbers check (`verify`), the committed notebook pairs (`sync`) and the index's map (`index`)."""
