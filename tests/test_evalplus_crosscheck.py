"""The project's pass@1 must equal ``evalplus.evaluate``'s on the same samples file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amr_dspy.evaluation import read_samples, write_samples
from tests.evalplus_helpers import mbpp_rows, use_mbpp_subset

NUMBERS = [2, 3, 4, 11, 12, 124, 737]

SAMPLES = {
    # right, but in another order: evalplus compares Mbpp/2 as sets
    "Mbpp/2": "def similar_elements(a, b):\n    return sorted(set(a) & set(b), reverse=True)\n",
    # wrong on base
    "Mbpp/3": "def is_not_prime(n):\n    return n % 2 == 0\n",
    # syntax error
    "Mbpp/4": "import heapq\ndef heap_queue_largest(nums, n)\n    return heapq.nlargest(n, nums)\n",
    # right on every base input, wrong on plus inputs where ch occurs once
    "Mbpp/11": (
        "def remove_Occ(s, ch):\n    if s.count(ch) < 2:\n        return s\n"
        "    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]\n"
    ),
    # no code
    "Mbpp/12": "",
    # right within atol
    "Mbpp/124": "import cmath\ndef angle_complex(a, b):\n    return cmath.phase(complex(a) + b) + 1e-9\n",
    # evalplus checks only "is not None" / the bool for this task
    "Mbpp/737": "import re\ndef check_str(string):\n    return bool(re.match('^[aeiouAEIOU][A-Za-z0-9_]*', string))\n",
}
EXPECTED = {  # (base, plus)
    "Mbpp/2": (True, True),
    "Mbpp/3": (False, False),
    "Mbpp/4": (False, False),
    "Mbpp/11": (True, False),
    "Mbpp/12": (False, False),
    "Mbpp/124": (True, True),
    "Mbpp/737": (True, True),
}


def test_pass_at_1_agrees_with_evalplus_evaluate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import amr_dspy.cli.eval  # noqa: F401  (registers the command)
    from amr_dspy.cli import app

    use_mbpp_subset(monkeypatch, tmp_path, NUMBERS)
    assert {r["task_id"] for r in mbpp_rows()} >= set(SAMPLES)
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, list(SAMPLES), SAMPLES)
    out = tmp_path / "run"

    result = CliRunner().invoke(
        app, ["eval", "--benchmark", "mbpp+", "--samples", str(samples), "--out", str(out), "--crosscheck"]
    )
    assert result.exit_code == 0, result.output

    data = json.loads((out / "results.json").read_text())
    verdicts = {t["task_id"]: (t["base_passed"], t["plus_passed"]) for t in data["tasks"]}
    assert verdicts == EXPECTED
    assert data["pass_at_1"] == {"base": pytest.approx(4 / 7), "plus": pytest.approx(3 / 7)}

    cross = data["crosscheck"]
    assert cross["agree"] is True and cross["disagreements"] == []
    assert cross["evalplus"] == data["pass_at_1"] == cross["project"]

    # evalplus's own report, read independently of the project's parsing
    theirs = json.loads(Path(cross["evalplus_results"]).read_text())["eval"]
    assert {
        task_id: (rows[0]["base_status"] == "pass", rows[0]["base_status"] == rows[0]["plus_status"] == "pass")
        for task_id, rows in theirs.items()
    } == EXPECTED
    assert read_samples(out / "evalplus" / "evalplus_samples.jsonl") == SAMPLES
