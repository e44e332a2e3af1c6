"""The web book's builder without a browser: claims sorted into checks and findings as the manifest
says, links made to work in the book, and the site checker catching what a browser would trip on.
(`make site` builds the real book; tests/browser/ loads it in Chromium.)"""

from lionlib.companion import site


def test_claims_without_kind_are_checks_and_findings_are_apart():
    manifest = {"elements": {"Figure 1": {"figures": [], "notebooks": ["01_x"], "claims": [
        {"claim": "old", "notebook": "01_x", "op": "<=", "threshold": 1.0, "value": 0.5, "verdict": "PASS"},
        {"claim": "loss fell", "notebook": "01_x", "op": ">", "threshold": 0, "value": 2, "verdict": "FAIL", "kind": "sanity"},
        {"claim": "p=1 beats p=2", "notebook": "01_x", "kind": "finding", "verdict": "inconclusive at this scale",
         "mean": 0.25, "ci_low": -0.1, "ci_high": 0.6, "n": 5,
         "protocol": {"hypothesis": "p=1 > p=2", "metric": "acc", "seeds": [0, 1, 2, 3, 4]}}]}}}
    checks, findings = site.claim_rows(manifest)
    assert [(r["claim"], r["kind"], r["verdict"]) for r in checks] == [("old", "check", "PASS"), ("loss fell", "sanity", "FAIL")]
    assert checks[0]["value"] == "0.5 <= 1"
    assert [(r["claim"], r["verdict"]) for r in findings] == [("p=1 beats p=2", "inconclusive at this scale")]
    assert findings[0]["value"] == "0.25 [-0.1, 0.6], n = 5"
    assert findings[0]["detail"] == "hypothesis: p=1 > p=2; metric: acc; seeds: [0, 1, 2, 3, 4]"
    table = site._claims_table(findings, "findings", ["01_x"], "mean")
    assert 'title="hypothesis: p=1 &gt; p=2' in table and '<a href="notebooks/01_x.html">01_x</a>' in table


def test_links_and_table_maths_made_to_work_in_the_book():
    md = "| a | $\\|x\\|_1$ | $\\mathrm{sign}(x)|x|$ |\n[fig](../paper_figures/box_x.png) [nb](01_box.ipynb)"
    out = site._relink(md, markdown=True)
    assert "$\\Vert x\\Vert _1$" in out and "$\\mathrm{sign}(x)\\vert x\\vert $" in out
    assert "(#box-x-png)" in out and "(01_box.ipynb)" in out  # MyST resolves the notebook itself
    html = site._relink('<a href="01_box.ipynb">n</a> <a href="../paper_figures/box_x.png">f</a>', markdown=False)
    assert 'href="01_box.html"' in html and 'href="../gallery.html#box-x-png"' in html
    assert site._relink("text $|x|$ outside a table", markdown=True) == "text $|x|$ outside a table"


def test_site_checker_reports_broken_links_anchors_and_remote_assets(tmp_path):
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="_static/ok.css"></head><body id="top">'
        '<a href="page.html#there">ok</a> <a href="page.html#nowhere">bad anchor</a> <a href="gone.html">gone</a>'
        '<a href="https://example.org/">an outgoing link is fine</a> <img src="missing.png"></body></html>')
    (tmp_path / "page.html").write_text('<html><body><h1 id="there">x</h1></body></html>')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "ok.css").write_text("@font-face { src: url(https://fonts.example/f.woff2); }")
    problems = site.check_site(tmp_path)
    expected = ["index.html: loads https://cdn.example/x.js from another host", "index.html: broken link gone.html",
                "index.html: link page.html#nowhere points to a missing anchor", "index.html: broken resource missing.png",
                "_static/ok.css: loads from another host"]
    for e in expected:
        assert any(p.startswith(e) for p in problems), (e, problems)
    assert not any("page.html#there" in p or "example.org" in p for p in problems)
