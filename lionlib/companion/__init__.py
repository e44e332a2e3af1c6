"""The notebook pipeline of the paper companion: repository paths (`paths`), figures and claims of one
notebook (`report`), and the papermill driver that runs them all and writes the manifest
(`python -m lionlib.companion.reproduce`)."""
