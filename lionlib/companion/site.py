"""The companion's web book: `python -m lionlib.companion.site` (what `make site` calls).

    python -m lionlib.companion.site               # build/site-src/ -> build/site/ (Sphinx), then check it
    python -m lionlib.companion.site --check-only  # only check an existing build/site/

The book is rendered from what is committed, never re-executed: the executed `notebooks/*.ipynb`,
`paper_figures/` (figures and `manifest.json`), `docs/*.md` and the README's API section, written as
Sphinx sources into `build/site-src/` (pages generated from the manifest; copies of the notebooks
whose code cells are tagged `hide-input`, so they render folded); then it runs `sphinx-build -W --keep-going -n -c docs` (configuration: `docs/conf.py`). Any Sphinx warning,
a missing image or an unresolved reference among them, fails the build.

Then `check_site` reads every built HTML file: each local link, image, script and stylesheet must
exist (anchors included), no image, script, stylesheet or font may come from another host, each
figure of the manifest must be in the gallery, and each notebook must have its page. Sphinx checks
the sources; this checks what a browser will load. `tests/browser/` then loads every page in Chromium.

The landing page leads with what reproduced: the summary line of the verdicts (`index.summary`), the
findings table (mean effect with its unit, 95 % interval, verdict), the paper map (`index.PAPER_MAP`,
the closed list of paper elements, in the paper's order), then one table per other kind of claim the
manifest holds (checks, identities, sanity checks, illustrations, any other). A claim without `kind`
is a check (manifests written before kinds existed).
"""

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lionlib.companion.index import effect_text, paper_position
from lionlib.companion.paths import BUILD, NOTEBOOKS, PAPER_FIGURES, REPO
from lionlib.companion.sync import output_problems

__all__ = ["SITE", "SOURCE", "claim_kind", "claim_rows", "figure_notebooks", "write_sources", "build", "check_site", "main"]

SITE = BUILD / "site"  # the book: open build/site/index.html, or serve the folder
SOURCE = BUILD / "site-src"  # generated Sphinx sources (rewritten on each build)
DOCS = REPO / "docs"  # conf.py, _static/, PAPER.md and the guide's pages
GUIDE = [f"guide/{p.stem}" for p in sorted(DOCS.glob("*.md")) if p.name != "PAPER.md"]
FIGURE_SUFFIXES = (".png", ".svg", ".jpg")


def claim_kind(claim: dict) -> str:
    """"check", "sanity" or "finding"; a claim without `kind` (older manifests) is a check."""
    return claim.get("kind", "check")


def _fmt(x, spec=".3g") -> str:
    return "" if x is None else format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def claim_rows(manifest: dict) -> tuple[list[dict], list[dict]]:
    """(checks, findings) as table rows, one per claim, elements in the paper's order (`index.paper_position`).

    Each row has the cells shown on the landing page: element, notebook, claim, kind, value (checks:
    `value op threshold`; findings: mean [95 % interval], n seeds) and verdict, all as text; a
    finding's protocol (hypothesis, metric, seeds...) is its `detail`, shown when hovering its claim.
    """
    checks, findings = [], []
    for element, entry in sorted(manifest["elements"].items(), key=lambda e: (paper_position(e[0]), e[0])):
        for c in entry["claims"]:
            row = {"element": element, "notebook": c.get("notebook", ""), "claim": c["claim"],
                   "kind": claim_kind(c), "verdict": str(c["verdict"])}
            if row["kind"] == "finding":
                row["value"] = f"{effect_text(c)}, n = {c.get('n', '?')}"
                row["metric"] = str((c.get("protocol") or {}).get("metric") or "")
                protocol = c.get("protocol") or {}
                row["detail"] = "; ".join(f"{k}: {protocol[k]}" for k in ("hypothesis", "metric", "seeds", "design", "source")
                                          if isinstance(protocol, dict) and protocol.get(k) not in (None, ""))
                findings.append(row)
            else:
                row["value"] = f"{_fmt(c.get('value'))} {c.get('op', '')} {_fmt(c.get('threshold'))}".strip()
                checks.append(row)
    return checks, findings


def figure_notebooks(figure: str, element_notebooks: list[str], notebooks: list[str]) -> list[str]:
    """The notebooks that save `figure`: those whose jupytext source names its stem, else the element's."""
    stem = Path(figure).stem
    named = [nb for nb in notebooks if (NOTEBOOKS / f"{nb}.py").exists()
             and re.search(rf"[\"']{re.escape(stem)}[\"'.]", (NOTEBOOKS / f"{nb}.py").read_text())]
    return named or [nb for nb in element_notebooks if nb in notebooks]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cell(text: str, cls: str = "", title: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' title="{html.escape(title)}"' if title else "")
    return f"<td{attrs}>{html.escape(text)}</td>"


def _verdict_cls(verdict: str) -> str:
    return {"PASS": "pass", "FAIL": "fail", "reproduced": "pass", "not reproduced": "fail"}.get(verdict, "open")


NO_WORD_BREAK = "overflow-wrap: normal; word-break: normal; hyphens: none"  # verdicts wrap between words only


def _nb_link(nb: str, notebooks: list[str]) -> str:
    """A link to a notebook's page (from the landing page), or the bare name when no such notebook is committed."""
    return f'<a href="notebooks/{nb}.html">{html.escape(nb)}</a>' if nb in notebooks else html.escape(nb)


def _claims_table(rows: list[dict], table_id: str, notebooks: list[str], value_head: str, findings: bool = False) -> str:
    head = ["paper element", "notebook", "claim", "kind", value_head] + (["measured as"] if findings else []) + ["verdict"]
    out = [f'<table class="table verdicts" id="{table_id}">', "<thead><tr>"
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for r in rows:
        out.append(f'<tr class="verdict-{_verdict_cls(r["verdict"])}">' + _cell(r["element"], "element")
                   + f'<td class="notebook">{_nb_link(r["notebook"], notebooks)}</td>'
                   + _cell(r["claim"], "claim", r.get("detail", ""))
                   + _cell(r["kind"], "kind") + _cell(r["value"], "value")
                   + (_cell(r.get("metric", ""), "metric") if findings else "")
                   + f'<td class="verdict" style="{NO_WORD_BREAK}">{html.escape(r["verdict"])}</td></tr>')
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


_KINDS = {  # kind -> (section title, table id, what it means)
    "check": ("Checks", "checks", "properties the maths or the code guarantees: each must pass"),
    "identity": ("Identities", "identities", "equalities the theory states, verified to round-off"),
    "sanity": ("Sanity checks", "sanity", "training works (the loss fell): no statement of the paper"),
    "illustration": ("Illustrations", "illustrations", "what a figure shows, checked as it is drawn")}


def _paper_map(manifest: dict, notebooks: list[str], figures: list[str]) -> list[str]:
    """The paper map: the covered elements of `index.PAPER_MAP`, in the paper's order, then the uncovered in one line."""
    from lionlib.companion.index import map_rows
    from lionlib.companion.reproduce import REGISTRY, registry_entry

    stems = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    rows = map_rows(manifest, REGISTRY, stems, registry_entry)
    lines = ["```{raw} html", '<table class="table paper-map" id="paper-map">',
             "<thead><tr><th>paper element</th><th>what it shows</th><th>notebooks</th><th>figures</th>"
             "<th>checks passed</th><th>findings</th></tr></thead>", "<tbody>"]
    for r in (r for r in rows if r["covered"]):
        figs = ", ".join(f'<a href="gallery.html#{_slug(f)}">{html.escape(f)}</a>' for f in r["figures"]
                         if f in figures) or "none"
        lines.append(f'<tr id="element-{_slug(r["element"])}">' + _cell(r["element"], "element") + _cell(r["about"], "about")
                     + f'<td>{", ".join(_nb_link(nb, notebooks) for nb in r["notebooks"])}</td>'
                     + f"<td>{figs}</td>" + _cell(r["checks"], "checks")
                     + f'<td class="findings" style="{NO_WORD_BREAK}">{html.escape(r["findings"])}</td></tr>')
    lines += ["</tbody>", "</table>", "```", ""]
    uncovered = [r["element"] for r in rows if not r["covered"]]
    if uncovered:
        lines += [f"Not yet covered: {', '.join(uncovered)}.", ""]
    return lines


def _landing(manifest: dict, notebooks: list[str], figures: list[str]) -> str:
    from lionlib.companion.index import kinds, provenance, summary

    checks, findings = claim_rows(manifest)
    lines = ["# lionlib: Lion secretly solves constrained optimization", "",
             "```{raw} html", f'<p id="summary" class="summary"><strong>What reproduced: {html.escape(summary(manifest))}.'
             "</strong></p>", "```", "", provenance(manifest), "",
             "The runnable companion to *Lion Secretly Solves Constrained Optimization: As Lyapunov Predicts* "
             "(Chen, Liu, Liang, Liu; ICLR 2024), rendered from the committed executed notebooks and "
             "`paper_figures/manifest.json` (nothing was re-run to build this page). A *finding* is an empirical "
             "statement measured over seeds: its mean effect with its unit, a 95 % interval and a verdict "
             "(`reproduced`, `not reproduced`, `inconclusive at this scale`). A *check* is a property the maths or "
             "the code guarantees; it must pass.", "", "## Findings", ""]
    lines += ["```{raw} html", _claims_table(findings, "findings", notebooks, "mean effect [95 % interval]", True), "```", ""]
    if not findings:
        lines += ["No findings in the manifest yet.", ""]
    lines += ["## Paper map", "", "Every element of the paper the companion covers, in the paper's order, where it "
              "is reproduced and its verdicts.", ""] + _paper_map(manifest, notebooks, figures)
    for kind in [k for k in kinds(manifest) if k != "finding"] or ["check"]:
        rows = [r for r in checks if r["kind"] == kind]
        title, table_id, about = _KINDS.get(kind, (f"Claims of kind {kind!r}", f"kind-{_slug(kind)}",
                                                   "as the notebooks recorded them"))
        lines += [f"## {title}", "", f"{about[0].upper()}{about[1:]}: {sum(r['verdict'] == 'PASS' for r in rows)} of "
                  f"{len(rows)} pass.", "",
                  "```{raw} html", _claims_table(rows, table_id, notebooks, "value op threshold"), "```", ""]
    unexecuted = sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.py") if p.stem not in notebooks)
    if unexecuted:
        lines += ["", "## Not yet in the book", "", "These notebooks have a jupytext source but no committed executed "
                  "`.ipynb`, so no page: " + ", ".join(f"`{nb}`" for nb in unexecuted) + "."]
    lines += ["", "```{toctree}", ":hidden:", ":caption: Notebooks", ""] + [f"notebooks/{nb}" for nb in notebooks]
    lines += ["```", "", "```{toctree}", ":hidden:", ":caption: Reference", "", "gallery", "paper", "api", *GUIDE, "```", ""]
    return "\n".join(lines)


def _map_anchor(element: str) -> str:
    """The paper-map row of a recorded element name (its `PAPER_MAP` entry), else the checks table."""
    from lionlib.companion.index import PAPER_MAP

    pos = paper_position(element)
    return f"element-{_slug(PAPER_MAP[pos].element)}" if pos < len(PAPER_MAP) else "checks"


def _gallery(manifest: dict, notebooks: list[str], figures: list[str]) -> str:
    owners: dict[str, list[str]] = {}
    for element, entry in sorted(manifest["elements"].items()):
        for f in entry["figures"]:
            owners.setdefault(f, []).append(element)
    lines = ["# Figure gallery", "", "Every figure in `paper_figures/`, with the paper element it reproduces, "
             "the notebook that computes it and that element's claims.", ""]
    for f in figures:
        elements = owners.get(f, [])
        nbs = sorted({nb for e in elements for nb in manifest["elements"][e]["notebooks"]})
        nbs = figure_notebooks(f, nbs, notebooks)
        lines += [f"({_slug(f)})=", f"## {f}", "", f"```{{image}} figures/{f}", f":alt: {f}", ":width: 100%", "```", ""]
        if not elements:
            lines.append("*Not registered to any paper element in the manifest.*")
        for e in elements:
            claims = manifest["elements"][e]["claims"]
            ch = [c for c in claims if claim_kind(c) != "finding"]
            fi = [c["verdict"] for c in claims if claim_kind(c) == "finding"]
            lines.append(f"- **{e}**: {sum(c['verdict'] == 'PASS' for c in ch)} / {len(ch)} checks pass"
                         + (f"; findings: {', '.join(fi)}" if fi else "")
                         + f' (<a href="index.html#{_map_anchor(e)}">in the paper map</a>)')
        lines += ["", "Notebook: " + (", ".join(f"{{doc}}`{nb} <notebooks/{nb}>`" for nb in nbs) or "none"), ""]
    return "\n".join(lines)


def _readme_api() -> str:
    """The README's API section (its `## The API...` heading up to the next `## `) as a page."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## (The API.*?)$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not m:
        raise SystemExit("README.md has no '## The API ...' section: the book's API page is made from it")
    return f"# {m.group(1)}\n{m.group(2)}"


def _relink(text: str, markdown: bool) -> str:
    """Links that work in JupyterLab, made to work in the book. Markdown (cells and outputs, parsed
    by MyST): `X.ipynb` resolves to its page already; `../paper_figures/F` -> F's gallery target.
    HTML outputs (not parsed): `X.ipynb` -> `X.html`, `../paper_figures/F` -> `../gallery.html#F`."""
    fig = r"\.\./paper_figures/([\w.-]+\.(?:png|svg|jpg))"
    if markdown:
        return _table_math(re.sub(fig, lambda m: f"#{_slug(m[1])}", text))
    text = re.sub(r"(?<![\w/.])(\d\d_\w+)\.ipynb\b", r"\1.html", text)
    return re.sub(fig, lambda m: f"../gallery.html#{_slug(m[1])}", text)


def _table_math(text: str) -> str:
    """In Markdown table rows, `|` inside $...$ maths would end the cell (GFM tables split on every
    pipe, escaped or not): write the norm `\\|` as `\\Vert` and a bare `|` as `\\vert`, as TeX means them."""
    def fix(m):
        return m[0].replace("\\|", "\\Vert ").replace("|", "\\vert ")
    return "\n".join(re.sub(r"\$[^$\n]+\$", fix, line) if line.lstrip().startswith("|") else line
                     for line in text.split("\n"))


def _folded(ipynb: Path, dest: Path) -> None:
    """Copy a committed notebook for the book: every code cell tagged `hide-input` (outputs stay,
    inputs fold), links in Markdown cells and in Markdown/HTML outputs made to work in the book."""
    nb = json.loads(ipynb.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = _relink(src, markdown=True) if cell["cell_type"] == "markdown" else src
        for out in cell.get("outputs", []):
            for mime in ("text/markdown", "text/html"):
                if mime in out.get("data", {}):
                    v = out["data"][mime]
                    out["data"][mime] = _relink("".join(v) if isinstance(v, list) else v, mime == "text/markdown")
        if cell["cell_type"] == "code":
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
    dest.write_text(json.dumps(nb))


def write_sources(src: Path = SOURCE) -> Path:
    """Write the Sphinx sources of the book into `src` (emptied first)."""
    manifest = json.loads((PAPER_FIGURES / "manifest.json").read_text())
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no executed notebooks in {NOTEBOOKS}: nothing to render")
    empty = [p for nb in notebooks for p in output_problems(NOTEBOOKS / f"{nb}.ipynb")]
    if empty:  # a page without outputs would render as an empty page, silently
        raise SystemExit("site: refusing pages without outputs:\n  " + "\n  ".join(empty))
    figures = sorted(p.name for p in PAPER_FIGURES.iterdir() if p.suffix in FIGURE_SUFFIXES)
    missing = sorted({f for e in manifest["elements"].values() for f in e["figures"]} - set(figures))
    if missing:
        raise SystemExit(f"manifest.json names figures missing from paper_figures/: {missing} "
                         "(re-run their notebooks: python -m lionlib.companion.reproduce --only NAME)")
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    (src / "figures").mkdir()
    for nb in notebooks:
        _folded(NOTEBOOKS / f"{nb}.ipynb", src / "notebooks" / f"{nb}.ipynb")
    for f in figures:
        shutil.copy2(PAPER_FIGURES / f, src / "figures" / f)
    (src / "index.md").write_text(_landing(manifest, notebooks, figures))
    (src / "gallery.md").write_text(_gallery(manifest, notebooks, figures))
    (src / "paper.md").write_text((DOCS / "PAPER.md").read_text())
    (src / "api.md").write_text(_readme_api())
    for page in GUIDE:  # docs/*.md: the details the README leaves out (running, speed, layout, ...)
        (src / f"{page}.md").parent.mkdir(exist_ok=True)
        (src / f"{page}.md").write_text((DOCS / f"{page.split('/')[1]}.md").read_text())
    return src


def build(src: Path = SOURCE, out: Path = SITE) -> None:
    """Run Sphinx (warnings are errors; nitpicky) from `src` into `out`, from scratch."""
    for d in (out, BUILD / "site-doctrees"):
        if d.exists():
            shutil.rmtree(d)
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", "-c", str(DOCS),
           "-d", str(BUILD / "site-doctrees"), str(src), str(out)]
    if subprocess.run(cmd).returncode:
        raise SystemExit("sphinx-build failed: see the warnings above (every warning fails the book)")


class _Refs(HTMLParser):
    """Collects ids, and the URLs a page links to or loads, of one HTML file."""
    LOADS = {("img", "src"), ("script", "src"), ("link", "href"), ("source", "src"), ("iframe", "src"),
             ("video", "src"), ("audio", "src"), ("embed", "src"), ("object", "data")}

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.loads, self.imgs = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for t, attr in self.LOADS:
            if tag == t and a.get(attr) and not (tag == "link" and a.get("rel") in ("canonical",)):
                self.loads.append(a[attr])
        if tag == "img":
            self.imgs.append(a.get("src", ""))


def check_site(site: Path = SITE) -> list[str]:
    """Problems of a built book: broken local links or anchors, anything loaded from another host,
    a manifest figure missing from the gallery, a notebook without its page."""
    if not (site / "index.html").exists():
        return [f"{site}/index.html does not exist: run python -m lionlib.companion.site"]
    pages = {p: _Refs() for p in sorted(site.rglob("*.html")) if "_static" not in p.relative_to(site).parts}
    for p, refs in pages.items():
        refs.feed(p.read_text(errors="replace"))
    problems = []
    for p, refs in pages.items():
        rel = p.relative_to(site)
        for url, loaded in [(u, False) for u in refs.links] + [(u, True) for u in refs.loads]:
            parts = urlsplit(url)
            if parts.scheme in ("mailto", "data", "javascript") or url.startswith("#") and not url[1:]:
                continue
            if parts.scheme or parts.netloc:
                if loaded:
                    problems.append(f"{rel}: loads {url} from another host (bundle it under _static/)")
                continue
            target = (p.parent / unquote(parts.path)).resolve() if parts.path else p
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: broken {'resource' if loaded else 'link'} {url}")
            elif parts.fragment and target.suffix == ".html" and target in pages \
                    and unquote(parts.fragment) not in pages[target].ids:
                problems.append(f"{rel}: link {url} points to a missing anchor")
    for css in site.rglob("*.css"):
        for m in re.finditer(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)|@import\s+['\"]https?://[^'\"]*", css.read_text(errors="replace")):
            problems.append(f"{css.relative_to(site)}: loads from another host: {m.group(0)}")
    manifest = json.loads((PAPER_FIGURES / "manifest.json").read_text())
    gallery = pages.get(site / "gallery.html")
    shown = {Path(unquote(u)).name for u in gallery.imgs} if gallery else set()
    for f in sorted({f for e in manifest["elements"].values() for f in e["figures"]}):
        if f not in shown:
            problems.append(f"gallery.html does not show the manifest's figure {f}")
    for nb in sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")):
        if site / "notebooks" / f"{nb}.html" not in pages:
            problems.append(f"notebook {nb} has no page notebooks/{nb}.html")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-only", action="store_true", help="only check an existing build/site/")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if not args.check_only:
        build(write_sources())
    problems = check_site()
    for p in problems:
        print(f"site: {p}", file=sys.stderr)
    if problems:
        print(f"site: {len(problems)} problems in {SITE}", file=sys.stderr)
        return 1
    print(f"site: {SITE}/index.html ({len(list(SITE.rglob('*.html')))} pages checked, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
