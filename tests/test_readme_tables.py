"""The benchmark tables in the docs are what experiments/readme_tables.py renders from the committed
JSON in experiments/results/: a number typed or edited by hand fails here."""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
readme_tables = importlib.import_module("readme_tables")

DOC = ROOT / "docs" / "benchmarks.md"


def test_committed_docs_match_the_committed_json():
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "readme_tables.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_report_has_its_block_with_machine_and_command():
    text = DOC.read_text()
    for report in sorted((ROOT / "experiments" / "results").glob("*.json")):
        match = re.search(rf"<!-- tables:{report.stem} -->\n(.*?)<!-- /tables -->", text, re.DOTALL)
        assert match, f"no generated block for {report.name} in {DOC.name}"
        block, meta = match.group(1), json.loads(report.read_text())["meta"]
        assert f"`{meta['command']}`" in block and "- machine: " in block and "cpu_capability" in block
        if "threads" in meta["machine"]:
            assert f"{meta['machine']['threads']} torch thread" in block


def test_a_hand_edited_number_is_caught():
    text = DOC.read_text()
    block = text.index("<!-- tables:bench_update_1thread -->")
    row = re.compile(r"\| 100 \| fp32 \| ([0-9.]+) \|")
    first = row.search(text, block)
    edited = text[:first.start(1)] + "1.23" + text[first.end(1):]
    assert readme_tables.rendered(edited, DOC) == text  # rendering restores the JSON's number
    assert readme_tables.main(["--check", str(DOC)]) == 0


def test_unknown_block_name_is_an_error(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- tables:no_such_report -->\n<!-- /tables -->\n")
    assert readme_tables.main(["--check", str(doc)]) == 2
