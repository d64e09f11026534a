"""The semantic evaluation (training/evaluation/semantic_eval.py): how a suggestion is judged, and
the configurations reaching the served app as themselves (a scripted model that always
says `zork()`: raw, it names nothing real; hybrid, the semantic engine keeps it from the user)."""

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import build_scripted_checkpoint
from training.evaluation.editor_eval import Cursor, file_cursors
from training.evaluation.semantic_eval import CONFIGS, evaluate, judge, known_members, markdown

SOURCE = """import os


def where(path):
    base = os.path.dirname(path)
    return os.path.join(base, "x")
"""


def cursor(kind: str, line: int) -> Cursor:
    (found,) = [c for c in file_cursors("m.py", SOURCE) if (c.kind, c.line) == (kind, line)]
    return found


def test_a_suggestion_is_judged_in_its_file():
    statement = cursor("statement", 5)
    assert statement.target == "base = os.path.dirname(path)"
    right = judge(statement, "base = os.path.dirname(path)", None)
    assert right == {
        "prediction": "base = os.path.dirname(path)",
        "text": "base = os.path.dirname(path)",
        "exact": True,
        "similarity": 100.0,
        "empty": False,
        "parses": True,
        "undefined": False,
        "unknown_attribute": False,
    }
    assert not judge(statement, "base = os.path.dirname(", None)["parses"]
    assert judge(statement, "base = zork(path)", None)["undefined"]
    assert judge(statement, "", None) == {
        "prediction": "",
        "text": "",
        "exact": False,
        "similarity": 0.0,
        "empty": True,
    }


def test_members_after_a_dot_on_a_known_type():
    member = cursor("member", 5)
    assert member.prefix.endswith("base = os.") and member.target == "path.dirname(path)"
    members = known_members(member)
    assert members is not None and "path" in members
    assert judge(member, "path.dirname(path)", members)["real_member"]
    wrong = judge(member, "zork()", members)
    assert not wrong["real_member"] and wrong["unknown_attribute"]
    assert known_members(cursor("statement", 5)) is None


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # Where token healing rules `zork` out (a statement's indentation), "TextWrapper" stands in.
    model = build_scripted_checkpoint(
        tmp_path_factory.mktemp("scripted") / "model", "zork()", runner_up=(0, "ĠTextWrapper")
    )
    settings = Settings(model=model, device="cpu", prefix_tokens=128, suffix_tokens=32)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_configurations_run_as_themselves(client):
    cursors = [cursor("statement", 5), cursor("member", 5), cursor("member", 6)]
    result = evaluate(client, cursors)
    raw, hybrid = result["records"]["raw greedy"], result["records"]["hybrid"]
    assert [r["prediction"] for r in raw] == ["TextWrapperork()", "zork()", "zork()"]
    assert raw[0]["undefined"] and all(r["unknown_attribute"] for r in raw[1:])
    assert not any(r["real_member"] for r in raw[1:])
    # Hybrid: `zork` is no member of `os`, so the constraint picks a real one (the bigram model
    # goes on with noise, which the checks may drop); at the statement the checks find the name
    # undefined and drop it.
    assert hybrid[0]["empty"]
    assert all(r["empty"] or r["real_member"] for r in hybrid[1:])
    assert any(r.get("real_member") for r in hybrid[1:])
    assert not any(r.get("undefined") or r.get("unknown_attribute") for r in hybrid)
    summaries = result["summaries"]
    assert list(summaries) == list(CONFIGS)
    assert summaries["raw greedy"]["member"]["real_member"] == 0.0
    assert summaries["hybrid"]["member"]["real_member"] == 100.0  # of the non-empty ones
    assert all("top5" in r for rs in result["records"].values() for r in rs)
    table = markdown(summaries)
    assert (
        "| | raw greedy | beam | hybrid | hybrid, 4 beams | hybrid, line, 2 beams |" in table
        and "**member cursors**" in table
    )
    assert set(result["hybrid_minus_raw_greedy"]) == {"exact", "similarity", "latency_p50_ratio"}
    assert "hybrid_line_beams_minus_raw_greedy" in result
    # one line: nothing past the first line's end
    assert all("\n" not in r["text"] for r in result["records"]["hybrid, line, 2 beams"])
