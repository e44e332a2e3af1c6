"""Sphinx configuration of the companion's web book (`make site`).

The sources are not in docs/: `python -m lionlib.companion.site` writes them into build/site-src/
(landing page and gallery from paper_figures/manifest.json, the committed executed notebooks with
their code cells folded, docs/PAPER.md, the README's API section) and runs
`sphinx-build -c docs build/site-src build/site`, so this file is the only configuration.

Why Sphinx + myst-nb + sphinx-book-theme rather than Jupyter Book 2 (MyST-JS): all three install
from PyPI alone and are pure Python, and the theme bundles its CSS, JavaScript and fonts, so the
build and the pages work with no network at all. Jupyter Book 2 needs Node and fetches its theme
at build time. MathJax is the one asset Sphinx would take from a CDN: sphinx-mathjax-offline
ships MathJax 3 (with its woff fonts) and points Sphinx at the local copy.
"""

project = "lionlib"
author = "lionlib contributors"
copyright = "the lionlib contributors"

extensions = [
    "myst_nb",  # MyST markdown and .ipynb pages (includes myst_parser)
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: no CDN
]

# Render what was committed: a book build never runs a notebook.
nb_execution_mode = "off"
# Code cells are folded (the builder tags each with hide-input); errors in committed outputs show.
nb_merge_streams = True
# Markdown outputs (tables built with display(Markdown(...)), $...$ maths in them) are parsed as
# MyST, like the notebooks' own Markdown cells; myst-nb's default (CommonMark) drops tables and maths.
nb_render_markdown_format = "myst"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# Widgets (ipywidgets) have no static rendering: their plain-text fallback is shown instead, and
# myst-nb's widget scripts (RequireJS and the widget manager, from CDNs) are never added.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "lionlib: Lion secretly solves constrained optimization"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "home_page_in_toc": True,
}
# A mode the theme's script accepts (it logs a console error for an empty one), and a favicon, so
# the browser does not ask for a missing /favicon.ico.
html_context = {"default_mode": "light"}
html_favicon = "_static/favicon.svg"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]

# MathJax 3 reads $...$ inline once dollarmath has turned it into \(...\): nothing else to set.
mathjax3_config = {"tex": {"tags": "ams"}}
