"""The results contract: atomic writes, verified reads, the scorecard."""
import json

import pytest

from ctd_lib.results import Claim, ResultsError, collect_results, read_results, scorecard_markdown, write_results


def write(tmp_path, scale="cpu", holds=True, notebook="01_x"):
    return write_results(
        tmp_path,
        notebook,
        scale=scale,
        parameters={"steps": 3, "lr": 0.1},
        metrics={"ratio": 1.01, "nan_metric": float("nan")},
        claims=[Claim(id="c1", statement="a claim", source="Eq. 2", holds=holds, evidence="ratio 1.01 within 5%")],
        wall_time=1.5,
    )


def test_roundtrip_with_provenance(tmp_path):
    path = write(tmp_path)
    assert path == tmp_path / "cpu" / "01_x.json"
    got = read_results(path)
    prov = got["provenance"]
    assert prov["parameters"] == {"steps": 3, "lr": 0.1}
    assert prov["wall_time_s"] == 1.5
    assert {"python", "torch", "numpy"} <= prov["versions"].keys()
    assert got["metrics"]["nan_metric"] is None  # non-finite numbers are stored as null, not as invalid JSON
    assert got["claims"][0]["holds"] is True
    assert not list((tmp_path / "cpu").glob("*.tmp"))


def test_tampered_file_is_rejected(tmp_path):
    path = write(tmp_path)
    data = json.loads(path.read_text())
    data["metrics"]["ratio"] = 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="sha256"):
        read_results(path)


def test_truncated_file_is_rejected(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ResultsError, match="JSON"):
        read_results(path)


def test_bad_scale_and_duplicate_claims(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        write(tmp_path, scale="gpu")
    c = Claim(id="a", statement="s", source="x", holds=True, evidence="e")
    with pytest.raises(ValueError, match="unique"):
        write_results(tmp_path, "n", scale="cpu", parameters={}, metrics={}, claims=[c, c], wall_time=0.0)


def test_scorecard_shows_both_scales_and_failures(tmp_path):
    write(tmp_path, scale="cpu", holds=True)
    write(tmp_path, scale="paper", holds=False)
    bad = write(tmp_path, scale="cpu", notebook="02_y")
    bad.write_text("{}")
    md = scorecard_markdown(tmp_path)
    assert "**01\\_x** (cpu: 1 of 1 hold, paper: 0 of 1 hold)" in md
    assert "| a claim | Eq. 2 | holds: ratio 1.01 within 5% | FAILS: ratio 1.01 within 5% |" in md
    assert "failed verification" in md and "02_y" in md
    assert "_errors" in collect_results(tmp_path)


def test_scorecard_marks_missing_scale(tmp_path):
    write(tmp_path, scale="cpu")
    assert "| not run |" in scorecard_markdown(tmp_path)


def test_scorecard_escapes_table_breaking_characters(tmp_path):
    write_results(tmp_path, "n", scale="cpu", parameters={}, metrics={}, wall_time=0.0,
                  claims=[Claim(id="c", statement="p_w(y|x) is *kept*", source="Eq. 4", holds=True, evidence="a|b")])
    row = [line for line in scorecard_markdown(tmp_path).splitlines() if "Eq. 4" in line][0]
    assert row == "| p\\_w(y\\|x) is \\*kept\\* | Eq. 4 | holds: a\\|b | not run |"
    assert row.replace("\\|", "").count("|") == 5  # four cells


def test_a_claim_source_with_quotes_is_refused():
    """The scorecard matches each source as written; the book would render ' and " as curly quotes."""
    Claim(id="ok", statement="the authors' claim", source="Seed 004, Sec. 5.2", holds=True, evidence="x")
    with pytest.raises(ValueError, match=r"^source="):
        Claim(id="bad", statement="s", source="Seed 004 authors' code", holds=True, evidence="x")
