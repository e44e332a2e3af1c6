"""The paper elements a notebook may support: one closed list, so a typo in a claim's element fails.

Every `Report.check`, `finding`, `identity`, `illustration` and `savefig` names one of `ELEMENTS`;
anything else is a ValueError that lists the close matches. A new element is added here, once.
"""

from __future__ import annotations

import difflib

__all__ = ["ELEMENTS", "check_element"]

ELEMENTS = (
    "Companion map",
    "Figure 1",
    "Figure 1 (lambda, decay scheme)",
    "Figure 4",
    "Table 2",
    "Theorem 3.1",
    "Theorem 4.1",
    "Theorem 4.1 (rate)",
    "Theorem B.9",
    "Section 3.1",
    "Section 3.1 (mirror descent)",
    "Section 3.1 (classical ODEs)",
    "Gradient enhancement (Section 3.1)",
    "Stochastic gradients (arXiv v2+)",
    "Muon note",
    "Muon follow-up (Fig. 4)",
    "Section 5 (CIFAR-10)",
    "Section 5 (GPT-2)",
    "Section 5 (architecture-dependent K)",
    "Section 5 (lambda trade-off)",
    "Lion vs AdamW",
    "Sanity",
    "Fused kernel",
    "Distributed Lion (arXiv 2404.00438)",
    "Cautious optimizers (arXiv 2411.16085)",
    "Cautious weight decay (arXiv 2510.12402)",
)


def check_element(element: str) -> str:
    """`element` if it is one of ELEMENTS, else a ValueError naming the closest ones."""
    if element not in ELEMENTS:
        close = difflib.get_close_matches(element, ELEMENTS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"{element!r} is not a paper element of lionlib.companion.elements.ELEMENTS{hint} "
                         "(add a new one there)")
    return element
