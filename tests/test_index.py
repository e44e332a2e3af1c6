"""The landing page leads with what reproduced (issue 21): the summary line of the verdicts, the
findings with units, the paper map in the paper's order with only real elements (a closed list, so a
typo in an element name fails), and each kind of claim apart."""

import json
import re

from lionlib.companion import index, site
from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES
from lionlib.companion.reproduce import REGISTRY, registry_entry


def _manifest(*claims):
    elements = {}
    for element, c in claims:
        elements.setdefault(element, {"notebooks": [c["notebook"]], "figures": [], "claims": []})["claims"].append(c)
    return {"scale": "cpu", "elements": elements, "notebooks": {}}


def _finding(verdict, metric="final test accuracy, percentage points", mean=1.5):
    return {"claim": "x", "notebook": "07_cifar10", "kind": "finding", "verdict": verdict, "mean": mean,
            "ci_low": 0.5, "ci_high": 2.5, "n": 5, "protocol": {"hypothesis": "h", "metric": metric, "seeds": [0]}}


def _check(verdict="PASS", kind="check", notebook="01_box_constraint"):
    return {"claim": "c", "notebook": notebook, "kind": kind, "verdict": verdict, "value": 1, "op": "<=", "threshold": 2}


def test_every_recorded_element_name_is_in_the_closed_list():
    manifest = json.loads((PAPER_FIGURES / "manifest.json").read_text())
    assert index.unknown_elements(manifest, REGISTRY) == []
    typo = _manifest(("Figure 1", _check()), ("Theorem 3.l", _check()))
    assert index.unknown_elements(typo) == ["Theorem 3.l"]
    stems = ["01_box_constraint"]
    problems = index.index_checks(typo, REGISTRY, stems, registry_entry)
    assert problems["element names outside the paper map (index.PAPER_MAP; a typo?)"] == ["Theorem 3.l"]


def test_the_map_is_in_the_papers_order_and_gathers_section_5_by_notebook():
    m = _manifest(("Theorem 3.1", _check(notebook="02_continuous_lyapunov")), ("Figure 1", _check()),
                  ("Lion vs AdamW", _finding("reproduced")),
                  ("Lion vs AdamW", _finding("not reproduced") | {"notebook": "08_gpt"}))
    stems = ["01_box_constraint", "02_continuous_lyapunov", "07_cifar10", "08_gpt"]
    rows = index.map_rows(m, REGISTRY, stems, registry_entry)
    assert [r["element"] for r in rows] == [e.element for e in index.PAPER_MAP]
    by = {r["element"]: r for r in rows}
    assert by["Section 5 (CIFAR-10)"]["findings"] == "1 reproduced" and by["Section 5 (CIFAR-10)"]["notebooks"] == ["07_cifar10"]
    assert by["Section 5 (GPT-2)"]["findings"] == "1 not reproduced"
    assert by["Figure 2"]["covered"] is False
    assert index.paper_position("Figure 1") < index.paper_position("Theorem 3.1") < index.paper_position("Lion vs AdamW")


def test_summary_counts_findings_by_verdict_and_each_kind_apart():
    m = _manifest(("Figure 1", _check()), ("Figure 1", _check("FAIL")), ("Theorem 3.1", _check(kind="identity")),
                  ("Figure 1", _check(kind="illustration")), ("Sanity", _check(kind="sanity")),
                  ("Lion vs AdamW", _finding("inconclusive at this scale")), ("Lion vs AdamW", _finding("reproduced")),
                  ("Companion map", _check("FAIL", notebook="00_index")))
    assert index.kinds(m) == ["finding", "check", "identity", "sanity", "illustration"]
    assert index.summary(m) == ("2 findings: 1 reproduced, 1 inconclusive at this scale; 1 of 2 checks pass; "
                                "1 of 1 identities pass; 1 of 1 sanity checks pass; 1 of 1 illustrations pass")
    assert index.summary({"elements": {}}) == "no results in the manifest yet"


def test_effects_carry_their_units():
    assert index.effect_text(_finding("reproduced")) == "1.5 pp [0.5, 2.5]"
    assert index.effect_text(_finding("x", "speed-up over lion_pytorch - 5, per round", -1.09)) == "-1.09 × [0.5, 2.5]"
    assert index.effect_unit(_finding("x", "final validation loss, nats")) == "nats"
    with_unit = _finding("x") | {"protocol": {"metric": "m", "unit": "s"}}
    assert index.effect_unit(with_unit) == "s"


def test_the_landing_page_leads_with_the_summary_then_findings_then_the_map():
    manifest = json.loads((PAPER_FIGURES / "manifest.json").read_text())
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    figures = sorted(p.name for p in PAPER_FIGURES.iterdir() if p.suffix in site.FIGURE_SUFFIXES)
    page = site._landing(manifest, notebooks, figures)
    at = {k: page.index(k) for k in ('id="summary"', 'id="findings"', 'id="paper-map"', 'id="checks"')}
    assert list(at) == sorted(at, key=at.get), at
    assert f"What reproduced: {index.summary(manifest)}." in page
    paper_map = page[at['id="paper-map"']:page.index("</table>", at['id="paper-map"'])]
    shown = re.findall(r'<td class="element">([^<]*)</td>', paper_map)
    assert shown == [e.element for e in index.PAPER_MAP if e.element in shown] and "Companion map" not in shown
    assert "Section 5 (CIFAR-10)" in shown and ">cifar10<" not in paper_map and ">gpt<" not in paper_map
    verdict_cells = re.findall(r'<td class="(?:verdict|findings)"[^>]*>', page)
    assert verdict_cells and all(site.NO_WORD_BREAK in c for c in verdict_cells)
    findings = [c for e in manifest["elements"].values() for c in e["claims"] if c.get("kind") == "finding"]
    assert all(index.effect_text(f) in page for f in findings)  # each effect with its units (test above)
