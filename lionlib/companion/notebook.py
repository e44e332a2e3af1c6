"""The one-line start of every companion notebook, and prose rendered from the claims.

    report = start("01_box_constraint", OUT_DIR)          # plotting style, the Report, the scale
    steps = by_scale(STEPS, smoke=1500, cpu=3000, paper=3000)
    say(report.sentence("the KKT floor grows with the gradient noise"))  # a finding's verdict, rendered

A notebook states results in its Markdown cells only through `say` (a verdict and its numbers come
from the report), never typed, so they cannot go stale on a re-run.
"""

from __future__ import annotations

from lionlib.companion.report import Report, _notebook_scale, setup_plotting

__all__ = ["start", "by_scale", "say"]


def start(notebook: str, out_dir=None, scale: str | None = None) -> Report:
    """Set the figure style, create the notebook's `Report` and print its scale."""
    setup_plotting()
    report = Report(notebook, out_dir=out_dir, scale=scale)
    print(f"{notebook}: scale {report.scale}")
    return report


def by_scale(value, scale: str | None = None, **defaults):
    """`value` if the notebook set it, else its default at the notebook's scale (smoke, cpu, paper)."""
    if value is not None:
        return value
    scale = scale or _notebook_scale()
    if scale not in defaults:
        raise ValueError(f"no default for the {scale} scale (defaults for {', '.join(defaults)})")
    return defaults[scale]


def say(text: str) -> None:
    """Show `text` as Markdown in Jupyter (printed elsewhere): for sentences built from the claims."""
    try:
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks extra
        print(text)
        return
    display(Markdown(text))
