"""ctd_lib.display: tables, claims, solver warnings shown once with their count, the scorecard figure."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ctd_lib.display import (
    FAILS,
    HOLDS,
    NOT_RUN,
    WarningGroup,
    claims_markdown,
    markdown_table,
    scorecard_figure,
    scorecard_rows,
    solver_warnings,
    summarise_warnings,
    warnings_markdown,
)
from ctd_lib.results import Claim, write_results
from ctd_lib.transport import entropic_plan


def _unconverged_plans(k: int):
    """k Sinkhorn solves stopped after 2 iterations: each warns, with its own numbers, and records it."""
    rng = np.random.default_rng(0)
    a = b = np.full(8, 1 / 8)
    return [entropic_plan(a, b, rng.random((8, 8)), reg=0.01, max_iter=2) for _ in range(k)]


def test_a_solver_warning_is_shown_once_with_its_count(capsys):
    with solver_warnings(show=False) as caught:
        plans = _unconverged_plans(5)
    assert not any(p.converged for p in plans), "the case must really warn"
    assert len(caught) == 5 and len({str(w.message) for w in caught}) > 1  # the numbers differ: not one message
    (group,) = summarise_warnings(caught)
    assert group.count == 5 and group.category == "RuntimeWarning"
    assert group.first == str(caught[0].message) and group.first.startswith("entropic_plan")
    assert not group.ours and group.where.startswith("test_display.py:")  # stacklevel names the solver's caller
    assert capsys.readouterr().err == "", "recorded warnings must not also reach stderr"


def test_the_admonition_names_count_and_first_message_without_absolute_paths(capsys, tmp_path):
    with solver_warnings(show=True):  # outside a notebook the summary is printed
        _unconverged_plans(3)
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.startswith("```{admonition} 3 solver warnings\n:class: warning")
    assert out.out.count("\n- ") == 1 and "(the first occurrence)" in out.out
    assert "- **3 times**: entropic\\_plan: sinkhorn did not converge" in out.out  # the caller (here) is not named
    import ctd_lib

    assert str(ctd_lib.__file__).rsplit("/ctd_lib/", 1)[0] not in out.out, "the builder's path is shown"


def test_kinds_are_grouped_by_raising_line_and_other_categories_pass_through():
    def warn_at(filename, lineno, text, category=RuntimeWarning):
        warnings.warn_explicit(text, category, filename, lineno)

    with pytest.warns(UserWarning, match="not ours to summarise"):
        with solver_warnings(show=False) as caught:
            warn_at("/x/ctd_lib/transport/blocks.py", 329, "block_plan: 1 of 10 blocks")
            warn_at("/x/ctd_lib/transport/blocks.py", 329, "block_plan: 2 of 10 blocks")
            warn_at("/y/site-packages/numpy/core.py", 7, "invalid value")
            warn_at("/x/ctd_lib/x.py", 1, "not ours to summarise", UserWarning)
    groups = summarise_warnings(caught)
    assert [(g.where, g.count, g.first, g.ours) for g in groups] == [
        ("ctd_lib/transport/blocks.py:329", 2, "block_plan: 1 of 10 blocks", True),
        ("core.py:7", 1, "invalid value", False)]
    text = warnings_markdown(groups)
    assert text.startswith("```{admonition} 3 solver warnings")
    assert "- **2 times**, from `ctd_lib.transport.blocks`: block\\_plan: 1 of 10 blocks (the first" in text
    assert "- **once**: invalid value\n" in text  # a line outside the library is not named
    other = summarise_warnings(caught[:1]) + (WarningGroup(category="UserWarning", where="a.py:1", count=1,
                                                           first="u", ours=False),)
    assert warnings_markdown(other).startswith("```{admonition} 2 warnings") and "UserWarning: u" in warnings_markdown(other)
    assert warnings_markdown([]) == ""


def test_warnings_are_shown_even_when_the_block_raises(capsys):
    with pytest.raises(ZeroDivisionError):
        with solver_warnings():
            warnings.warn("diverged", RuntimeWarning)
            1 / 0  # noqa: B018
    assert "```{admonition} 1 solver warning\n" in capsys.readouterr().out


def test_markdown_table_takes_sequences_and_checks_their_width():
    text = markdown_table([("a|b", 0.12345, None), ("c", float("nan"), False)], ["x", "y_1", "z"])
    assert text.splitlines() == ["| x | y\\_1 | z |", "| --- | --- | --- |", "| a\\|b | 0.123 | cannot check |",
                                 "| c | n/a | no |"]
    with pytest.raises(ValueError, match="columns"):
        markdown_table([("a", 1)])
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table([("a", 1)], ["x", "y", "z"])


def test_claims_table_counts_verdicts_and_shows_the_file_below_results(tmp_path):
    claims = [Claim(id="a", statement="s*a", source="Eq. (2)", holds=True, evidence="e|1"),
              Claim(id="b", statement="s", source="Remark 1", holds=False, evidence="e")]
    path = write_results(tmp_path / "results", "01_x", scale="cpu", parameters={}, metrics={}, claims=claims,
                         wall_time=1.0)
    text = claims_markdown(claims, path, tmp_path / "results")
    assert "| **holds** | s\\*a | Eq. (2) | e\\|1 |" in text and "| **fails** | s |" in text
    assert text.endswith("2 claims checked, 1 holds; filed in `results/cpu/01_x.json`.")
    assert str(tmp_path) not in text


def _claim(i, holds):
    return Claim(id=f"c{i}", statement=f"claim {i}", source="s", holds=holds, evidence="e")


def test_scorecard_rows_and_figure_hold_one_square_per_claim_and_scale(tmp_path):
    write_results(tmp_path, "01_a", scale="cpu", parameters={}, metrics={}, wall_time=1.0,
                  claims=[_claim(0, True), _claim(1, False), _claim(2, True)])
    write_results(tmp_path, "01_a", scale="paper", parameters={}, metrics={}, wall_time=1.0,
                  claims=[_claim(0, False)])
    write_results(tmp_path, "02_b", scale="cpu", parameters={}, metrics={}, wall_time=1.0, claims=[_claim(0, False)])
    rows = scorecard_rows(tmp_path, ["cpu", "paper"])
    assert [r.notebook for r in rows] == ["01_a", "02_b"]
    assert rows[0].verdicts == {"cpu": (True, False, True), "paper": (False, None, None)}
    assert rows[0].held("cpu") == (2, 3) and rows[0].held("paper") == (0, 1) and rows[1].held("paper") is None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    fig = scorecard_figure(tmp_path, ["cpu", "paper"])
    colors = [to_hex(p.get_facecolor()) for p in fig.axes[0].patches]
    plt.close(fig)
    expected = [HOLDS, FAILS, HOLDS, FAILS, NOT_RUN, NOT_RUN, FAILS, NOT_RUN]  # row by row, scale by scale
    assert colors == expected
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"2 of 3 hold", "0 of 1 hold", "not run", "cpu scale", "paper scale"} <= set(texts)


def test_scorecard_figure_without_results_says_so(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = scorecard_figure(tmp_path / "none")
    assert any("No results files yet" in t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
