"""REPORT.md, figures and tables from a fake results tree (no training: the run files are written here)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.bench.headlines import headline_of
from harness.compare import (
    Summary,
    comparison_records,
    cost_curve_points,
    group_runs,
    load_runs,
    paired_records,
    split_run_sets,
    summarise,
    training_bands,
    verdict,
)
from harness.paper import PAPER_DIR, load_tables
from harness.report import build_report, main, write_report

MARKET_N = 12936
# The exact text SPEC section 8 asks for (spelled out, not imported, so that it is checked).
NA_PAPER = "n/a (paper value not transcribed)"


def make_run(
    results: Path,
    dataset: str,
    protocol: str,
    run_id: str,
    seed: int,
    final: dict[str, Any] | None,
    *,
    variant: str = "full",
    layout: str = "market1501",
    train: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    env: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write one run directory of the run contract; ``final=None`` leaves the run unfinished."""
    run_dir = results / "runs" / dataset / protocol / run_id
    run_dir.mkdir(parents=True)
    synthetic = dataset == "synthetic"
    settings = {
        "dataset": dataset,
        "synthetic_layout": layout,
        "arch": "resnet18" if synthetic else "resnet50",
        "batch_size": 64,
        "bn_groups": 4,
        "budget": "2n",
        "selection": "dus",
        "seed": seed,
        **(train or {}),
    }
    n = final.get("num_train_images", MARKET_N) if final else MARKET_N
    settings_file = {
        "protocol": protocol,
        "protocol_version": 1,
        "dataset": dataset,
        "seed": seed,
        "train": settings,
        "world_size": 1,
        "gpus": 4,
        "bn_groups": settings["bn_groups"],
        "run_id": run_id,
        "variant": variant,
        "synthetic": synthetic,
        "num_train_images": n,
        **(config or {}),
    }
    (run_dir / "config.json").write_text(json.dumps(settings_file))
    (run_dir / "env.json").write_text(json.dumps(env or {"git_commit": "a" * 40, "git_dirty": False}))
    rows = metrics or [
        {"epoch": 0, "queries_spent": 100, "mAP": 10.0},
        {"epoch": 1, "queries_spent": 200},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if final is not None:
        record = {
            "mINP": 20.0,
            "rank5": 90.0,
            "rank10": 93.0,
            "budget": 2 * n,
            "pairs_known": 50000,
            "num_train_images": n,
            "best_mAP_on_test": 99.0,
            "dataset": dataset,
            "protocol": protocol,
            "variant": variant,
            "seed": seed,
            "synthetic": synthetic,
            "synthetic_size": "64x10" if synthetic else None,
            "device": "cpu",
            "world_size": 1,
            **final,
        }
        (run_dir / "final.json").write_text(json.dumps(record))
    return run_dir


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Results: 2 seeds of Market-1501 `full`, an ablation, a budget-0 run, synthetic runs, a bench file."""
    root = tmp_path / "results"
    make_run(root, "market1501", "paper", "m-full-s1", 1, {"mAP": 70.0, "rank1": 86.0, "queries_spent": 20000})
    make_run(root, "market1501", "paper", "m-full-s2", 2, {"mAP": 72.0, "rank1": 88.0, "queries_spent": 22000})
    make_run(
        root,
        "market1501",
        "paper",
        "m-rand-s1",
        1,
        {"mAP": 65.0, "rank1": 84.0, "queries_spent": 25872},
        variant="selection=random",
        train={"selection": "random"},
    )
    make_run(
        root,
        "market1501",
        "paper",
        "m-b0-s1",
        1,
        {"mAP": 60.0, "rank1": 80.0, "queries_spent": 0, "budget": 0},
        variant="budget=0",
        train={"budget": 0, "bn_groups": 1},
    )
    make_run(
        root,
        "synthetic",
        "ci",
        "s-full-s1",
        1,
        {"mAP": 41.0, "rank1": 55.0, "queries_spent": 300, "num_train_images": 320},
    )
    make_run(
        root,
        "synthetic",
        "ci",
        "s-full-s2",
        2,
        {"mAP": 45.0, "rank1": 59.0, "queries_spent": 310, "num_train_images": 320},
    )
    make_run(root, "msmt17", "paper", "t-unfinished", 1, None, metrics=[{"epoch": 0}, {"epoch": 3}])
    bench = root / "bench"
    bench.mkdir()
    (bench / "jaccard.json").write_text(
        json.dumps({"device": "cpu", "results": [{"name": "jaccard", "n": 1000, "ours_s": 0.5, "ratio": 4.25}]})
    )
    return root


def _section(report: str, heading: str) -> str:
    """The text of the section that starts with the line ``heading`` up to the next heading of its level."""
    level = heading.split(" ")[0]
    start = report.index(heading + "\n")
    match = re.search(rf"^{level} ", report[start + len(heading) :], flags=re.M)
    end = start + len(heading) + match.start() if match else len(report)
    return report[start:end]


def test_summarise_mean_and_sample_std() -> None:
    assert summarise([70.0, 72.0]) == Summary(71.0, pytest.approx(2**0.5), 2)
    assert summarise([5.0, None]) == Summary(5.0, None, 1)
    assert summarise([]) == Summary(None, None, 0)


def test_verdict_uses_the_tolerance_and_never_guesses() -> None:
    assert verdict(71.0, None) == NA_PAPER
    assert verdict(71.0, 72.5).startswith("agrees")
    assert verdict(71.0, 80.0) == "lower by more than 2"
    assert verdict(83.0, 80.0) == "higher by more than 2"


def test_report_without_runs_still_shows_paper_rows_and_bounds(tmp_path: Path) -> None:
    report = build_report(tmp_path / "empty")
    for name in ("## Market-1501", "## MSMT17"):
        section = _section(report, name)
        assert NA_PAPER in section
        assert "### Bounds" in section
    assert "| 73.1 " in _section(report, "## Market-1501")
    assert "| 19.1 " in _section(report, "## MSMT17")
    assert "No complete runs on Market-1501 yet" in report
    assert "## Runs on synthetic data (never compared with the paper)" in report


def test_empty_results_write_compilable_placeholders(tmp_path: Path) -> None:
    write_report(tmp_path)
    assert (tmp_path / "tables" / "comparison.tex").read_text().startswith("% comparison: no complete runs")
    assert (tmp_path / "figures" / "cost-curve-msmt17.png").is_file()


def test_report_content(results: Path) -> None:
    report = build_report(results)
    market = _section(report, "## Market-1501")
    # The paper's rows: every null reads n/a; the bounds as written.
    paper_main = _section(market, "### Paper: Comparison with active-learning methods (`results/paper/spal_main.json`)")
    assert paper_main.count(NA_PAPER) == 5
    bounds = _section(market, "### Bounds: no labels and all labels (`results/paper/bounds.json`, not SPAL numbers)")
    assert "| 73.1 " in bounds and "| 88.1 " in bounds and "| 86.1 " in bounds
    # Reproduced: mean ± sample std over the two seeds, with the run ids.
    reproduced = _section(market, "### Reproduced on Market-1501")
    full_row = next(line for line in reproduced.splitlines() if "| full " in line)
    assert "71.00 ± 1.41" in full_row and "87.00 ± 1.41" in full_row
    assert "m-full-s1, m-full-s2" in full_row
    assert "99.00 ± 0.00" in full_row  # best-on-test only in its labelled column
    assert "| 16 " in full_row  # BN batch: 64 images, one process, 4 groups
    no_groups = next(line for line in reproduced.splitlines() if "| budget=0 " in line)
    assert "| 64 (paper: 16) " in no_groups
    # Comparison with a null paper value: n/a verdict, no difference.
    comparison = _section(market, "### Reproduced vs paper on Market-1501 (tolerance ±2 points)")
    full_map = next(line for line in comparison.splitlines() if "| full " in line and "| mAP " in line)
    assert full_map.count(NA_PAPER) == 2 and "| n/a " in full_map
    # budget=0 is compared with SpCL's bound, which is known: a real difference and verdict.
    spcl = next(line for line in comparison.splitlines() if "budget=0" in line and "| mAP " in line)
    assert "SpCL (unsupervised)" in spcl and "-13.10" in spcl and "lower by more than 2" in spcl
    # Annotation cost: measured queries, share of 2n and of all pairs.
    cost = _section(market, "### Annotation cost on Market-1501 (pair queries; one same/different answer = 1)")
    measured = next(line for line in cost.splitlines() if "/ full " in line)
    assert "21,000 ± 1,414" in measured
    assert f"{100 * 21000 / (2 * MARKET_N):.3g}%" in measured
    assert f"{100 * 21000 / (MARKET_N * (MARKET_N - 1) / 2):.3g}%" in measured
    assert "| 2n = 25,872 " in measured
    no_labels = next(line for line in cost.splitlines() if "/ budget=0 " in line)
    assert "| 0 = 0 " in no_labels and "| 0% " in no_labels
    # MSMT17 has only an unfinished run: nothing aggregated, but listed as incomplete.
    assert "No complete runs on MSMT17 yet" in report
    assert "incomplete (last epoch logged: 3)" in report


def test_synthetic_runs_have_their_own_table_and_are_never_compared(results: Path) -> None:
    report = build_report(results)
    synthetic = _section(report, "## Runs on synthetic data (never compared with the paper)")
    row = next(line for line in synthetic.splitlines() if "s-full-s1" in line)
    assert "43.00 ± 2.83" in row and "57.00 ± 2.83" in row and "| market1501 " in row
    for dataset in ("## Market-1501", "## MSMT17"):
        assert "s-full-s1" not in _section(report, dataset)
    assert all(r["dataset"] != "synthetic" for r in comparison_records(*_groups_and_tables(results)))


def _groups_and_tables(results: Path) -> tuple[Any, Any]:
    runs, _ = load_runs(results)
    return group_runs(runs), load_tables(PAPER_DIR)


def test_ablation_section_deltas_against_full(results: Path) -> None:
    ablation = _section(build_report(results), "## Ablation")
    market = _section(ablation, "### Market-1501")
    row = next(line for line in market.splitlines() if "| selection=random " in line)
    # Paired on the one seed both ran (seed 1: 65 - 70, 84 - 86), not the difference of the means (-6, -3).
    assert "65.00 (n=1)" in row and "| -5.00 (1 seed: no interval) " in row and "| -2.00 (1 seed" in row
    assert "not distinguishable at 1 seed (needs 2 or more)" in row
    assert row.count(NA_PAPER) == 2
    # The paper's ablation variants without runs are listed too.
    assert "| clustering=plain " in market and "| no runs " in market
    # Budget-sweep variants are not ablations.
    assert "budget=0" not in market


def test_filled_paper_value_gives_difference_and_verdict(results: Path) -> None:
    paper = results / "paper"
    shutil.copytree(PAPER_DIR, paper)
    main = json.loads((paper / "spal_main.json").read_text())
    row = main["rows"][0]
    row["market1501"]["mAP"] = 80.0
    row["market1501"]["queries"] = 21500
    del row["status"]
    row["source"] = "test: a filled-in value"
    (paper / "spal_main.json").write_text(json.dumps(main))
    report = build_report(results)
    comparison = _section(report, "### Reproduced vs paper on Market-1501 (tolerance ±2 points)")
    full_map = next(line for line in comparison.splitlines() if "| full " in line and "| mAP " in line)
    assert "| 80.0 " in full_map and "| -9.00 " in full_map and "lower by more than 2" in full_map
    full_r1 = next(line for line in comparison.splitlines() if "| full " in line and "| Rank-1 " in line)
    assert full_r1.count(NA_PAPER) == 2
    paper_main = _section(report, "### Paper: Comparison with active-learning methods (`results/paper/spal_main.json`)")
    assert "test: a filled-in value" in paper_main and "| 80.0 " in paper_main
    cost = _section(report, "### Annotation cost on Market-1501 (pair queries; one same/different answer = 1)")
    assert f"{100 * 21500 / (2 * MARKET_N):.3g}%" in cost


def test_cost_curve_points_one_line_per_selection(results: Path) -> None:
    groups, _ = _groups_and_tables(results)
    lines = cost_curve_points(groups, "market1501")
    assert set(lines) == {"dus", "random"}
    assert [p["budget"] for p in lines["dus"]] == ["0", "2n"]  # sorted by queries spent
    assert lines["dus"][1]["mAP"].mean == pytest.approx(71.0)
    assert lines["random"][0]["run_ids"] == ["m-rand-s1"]


def test_cost_curve_keeps_each_protocol_version_on_its_own_line(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for version, mAP in ((2, 40.0), (3, 50.0)):
        for variant, budget, queries in (("full", "2n", 800), ("budget=0", "0", 0)):
            make_run(
                root,
                "synthetic",
                "synthetic-bench",
                f"v{version}-{variant}",
                1,
                {"mAP": mAP + queries / 100, "rank1": mAP, "queries_spent": queries},
                variant=variant,
                train={"budget": budget},
                config={"protocol_version": version},
            )
    groups, _ = _groups_and_tables(root)
    lines = cost_curve_points(groups, "synthetic", "market1501")
    assert set(lines) == {"dus (synthetic-bench v2)", "dus (synthetic-bench v3)"}
    assert [p["mAP"].mean for p in lines["dus (synthetic-bench v3)"]] == [50.0, 58.0]


def test_write_report_writes_figures_tables_and_links(results: Path) -> None:
    path = write_report(results)
    report = path.read_text()
    assert path == results / "REPORT.md"
    for figure in (
        "figures/cost-curve-market1501.png",
        "figures/cost-curve-msmt17.png",
        "figures/cost-curve-synthetic-market1501.png",
        "figures/runs-market1501-paper.png",
        "figures/runs-synthetic-market1501-ci.png",
        "figures/runs-msmt17-paper.png",
    ):
        assert f"({figure})" in report
        assert (results / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (results / "tables" / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    spcl = [r for r in rows if r["variant"] == "budget=0" and r["metric"] == "mAP"]
    assert len(spcl) == 1 and float(spcl[0]["difference"]) == pytest.approx(-13.1)
    assert "\\toprule" in (results / "tables" / "comparison.tex").read_text()
    with (results / "tables" / "paired.csv").open() as handle:
        paired = [r for r in csv.DictReader(handle) if r["comparison"] == "SPAL (full) vs budget 0"]
    # Market-1501: seed 1 is the only seed both ran (70 - 60 mAP, 86 - 80 Rank-1); synthetic has no budget 0.
    market = [(r["metric"], float(r["mean"]), r["seeds"]) for r in paired if r["dataset"] == "market1501"]
    assert market == [("mAP", 10.0, "1"), ("rank1", 6.0, "1")]
    [synthetic] = [r for r in paired if r["dataset"] == "synthetic"]
    assert synthetic["note"] == "cannot be compared: no `budget=0` runs in this set"
    assert "81.2\\%" in (results / "tables" / "cost.tex").read_text()  # LaTeX-escaped percent


def test_benchmark_table_shows_the_files_keys(results: Path) -> None:
    bench = _section(build_report(results), "## Benchmarks")
    assert "every field of <code>results/bench/jaccard.json</code>" in bench
    assert "device: cpu" in bench
    header = next(line for line in bench.splitlines() if line.startswith("| name"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["name", "n", "ours_s", "ratio"]
    assert "| 4.25 " in bench


def test_a_benchmark_file_without_a_headline_is_named_not_dropped(results: Path) -> None:
    (results / "bench" / "evaluation-broken.json").write_text(json.dumps({"size": "tiny", "timing": {}}))
    bench = _section(build_report(results), "## Benchmarks")
    assert "- `results/bench/evaluation-broken.json`: no headline (TypeError: " in bench
    assert "every field of <code>results/bench/evaluation-broken.json</code>" in bench


def test_runs_section_names_commit_and_unreadable_files(results: Path) -> None:
    (results / "runs" / "market1501" / "paper" / "broken").mkdir()
    (results / "runs" / "market1501" / "paper" / "broken" / "config.json").write_text("{not json")
    runs = _section(build_report(results), "## Runs")
    assert "aaaaaaaaaaaa" in runs
    assert "broken/config.json: unreadable" in runs


def test_bench_headlines_state_each_figure_with_its_same_run_baseline() -> None:
    # Files written before the benchmarks wrote their headline get the one their benchmark writes now.
    evaluation = {
        "size": "msmt17",
        "device": "cpu",
        "timing": {"wall_s": 20.0},
        "baseline": {"naive_full_sort_extrapolated_s": 100.0},
        "memory": {"process_peak_rss_mb": 1500.0},
        "machine": {"cpu_model": "CPU X"},
        "provenance": {"git_commit": "abcdef1234"},
    }
    [row] = headline_of("evaluation-msmt17-cpu.json", evaluation)
    assert row["measured"] == "20.0 s" and row["ratio"] == "5.00x faster" and row["peak memory"] == "1500 MB"
    assert row["machine"] == "CPU X" and row["commit"] == "abcdef1"
    label = {
        "size": "market1501",
        "device": "cpu",
        "timing": {"label_phase_s": 6.0, "knn_baseline_s": 4.0, "label_phase_over_knn": 1.5},
        "memory": {"label_phase_process_peak_rss_mb": 1000.0},
        "dense_reference": {"dense_reference_s": 20.0, "jaccard_s": 5.0, "dense_over_jaccard": 4.0},
    }
    rows = headline_of("label-phase-market1501-cpu.json", label)
    assert [r["ratio"] for r in rows] == ["1.50x the k-NN", "4.00x faster"]
    assert headline_of("something-else.json", {"x": 1}) == []
    written = [{"what": "a step", "measured": "1.0 s"}]
    assert headline_of("evaluation-msmt17-cpu.json", {**evaluation, "headline": written}) == written


def test_the_benchmarks_table_shows_the_headline_a_file_holds(results: Path) -> None:
    headline = {"what": "a new benchmark", "measured": "2.0 s", "baseline (same run)": "x: 4.0 s", "ratio": "2x"}
    (results / "bench" / "new-bench.json").write_text(json.dumps({"timing": {"s": 2.0}, "headline": [headline]}))
    bench = _section(build_report(results), "## Benchmarks")
    assert "| a new benchmark " in bench and "| x: 4.0 s " in bench
    details = bench[bench.index("results/bench/new-bench.json") :]
    assert "timing.s" in details and "a new benchmark" not in details  # the headline is not repeated below


# ------------------------------------------------------------------------------- run sets and pairing


def _env(commit: str, date: str | None, cpu: str = "AMD EPYC", gpu: str | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {"git_commit": commit * 40, "git_dirty": False, "cpu": cpu, "gpu_name": gpu}
    if date is not None:
        env["date"] = date
    return env


def _synthetic(root: Path, run_id: str, seed: int, mAP: float | None, env: dict[str, Any], **kwargs: Any) -> Path:
    final = None if mAP is None else {"mAP": mAP, "rank1": mAP + 10, "queries_spent": 300, "num_train_images": 320}
    return make_run(root, "synthetic", "ci", run_id, seed, final, env=env, **kwargs)


def _row(section: str, *needles: str) -> str:
    return next(line for line in section.splitlines() if all(n in line for n in needles))


def test_runs_of_two_commits_with_the_same_seeds_are_never_in_one_cell(tmp_path: Path) -> None:
    root = tmp_path / "results"
    old, new = _env("a", "2026-01-01T10:00:00+00:00"), _env("b", "2026-02-01T10:00:00+00:00")
    for seed, value in ((1, 10.0), (2, 20.0)):
        _synthetic(root, f"old-s{seed}", seed, value, old)
        _synthetic(root, f"new-s{seed}", seed, value + 50, new)
    runs, _ = load_runs(root)
    groups = group_runs(runs)
    [(key, members)] = groups.items()
    assert [r.run_id for r in members] == ["new-s1", "new-s2"]
    used, not_used = split_run_sets(runs)
    assert used[members[0].context].key.commit == "b" * 40
    assert [(s.key.commit, reason) for s, reason in not_used] == [("a" * 40, "older than the set used")]
    report = build_report(root)
    synthetic = _section(report, "## Runs on synthetic data (never compared with the paper)")
    row = _row(synthetic, "| full ")
    assert "| 1, 2 " in row and "65.00 ± 7.07" in row and "old-s" not in row
    older = _section(report, "### Older sets, not used")
    assert "| aaaaaaaaaaaa " in _row(older, "| synthetic-market1501 ") and "older than the set used" in older
    assert "bbbbbbbbbbbb" not in older
    listing = _section(report, "## Runs")
    assert "not used: set older than the set used" in _row(listing, "| old-s1 ")
    assert "| used " in _row(listing, "| new-s1 ")


def test_a_newer_incomplete_set_or_another_machine_or_world_size_is_a_set_of_its_own(tmp_path: Path) -> None:
    root = tmp_path / "results"
    done = _env("a", "2026-01-01T10:00:00+00:00")
    for seed in (1, 2):
        _synthetic(root, f"done-s{seed}", seed, 30.0 + seed, done)
    running = _env("b", "2026-03-01T10:00:00+00:00")
    _synthetic(root, "running-s1", 1, 90.0, running)
    _synthetic(root, "running-s2", 2, None, running)
    # Same commit as the complete set, newer, but another CPU model / another world size.
    _synthetic(root, "intel-s1", 1, 70.0, _env("a", "2026-02-01T10:00:00+00:00", cpu="Intel Xeon"))
    _synthetic(root, "ws2-s1", 1, 80.0, _env("a", "2026-02-02T10:00:00+00:00"), config={"world_size": 2})
    runs, _ = load_runs(root)
    used, not_used = split_run_sets(runs)
    [chosen] = used.values()
    # The two newest sets are complete single runs: the one with world size 2 is newest.
    assert [r.run_id for r in chosen.runs] == ["ws2-s1"] and chosen.key.world_size == 2
    reasons = {tuple(r.run_id for r in s.runs): reason for s, reason in not_used}
    assert reasons == {
        ("running-s1", "running-s2"): "incomplete (1 of 2 runs finished)",
        ("intel-s1",): "older than the set used",
        ("done-s1", "done-s2"): "older than the set used",
    }
    machines = {s.key.machine for s, _ in not_used}
    assert machines == {"AMD EPYC", "Intel Xeon"}
    assert {s.key.machine for s in used.values()} == {"AMD EPYC"}


def test_a_seed_run_twice_in_one_set_counts_once_its_newest_run(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _synthetic(root, "a-first", 1, 10.0, _env("a", "2026-01-01T10:00:00+00:00"))
    _synthetic(root, "b-again", 1, 30.0, _env("a", "2026-01-01T11:00:00+00:00"))
    _synthetic(root, "c-seed2", 2, 20.0, _env("a", "2026-01-01T09:00:00+00:00"))
    runs, _ = load_runs(root)
    [members] = group_runs(runs).values()
    assert [r.run_id for r in members] == ["b-again", "c-seed2"]
    listing = _section(build_report(root), "## Runs")
    assert "not used: a newer run of this seed in the set" in _row(listing, "| a-first ")


def test_without_a_recorded_date_the_files_time_orders_the_sets(tmp_path: Path) -> None:
    import os

    root = tmp_path / "results"
    first = _synthetic(root, "first", 1, 10.0, _env("a", None))
    second = _synthetic(root, "second", 1, 20.0, _env("b", None))
    # "first" was written later although its directory sorts first.
    for folder, stamp in ((first, 2_000_000_000), (second, 1_000_000_000)):
        for name in ("config.json", "final.json"):
            os.utime(folder / name, (stamp, stamp))
    runs, problems = load_runs(root)
    assert not problems
    [members] = group_runs(runs).values()
    assert [r.run_id for r in members] == ["first"]


def test_paired_comparisons_on_hand_made_numbers(tmp_path: Path) -> None:
    root = tmp_path / "results"
    env = _env("a", "2026-01-01T10:00:00+00:00")
    # full - budget 0 per seed: 10, 11, 9 -> mean 10, sd 1, t(0.975, 2) = 4.3027: [7.52, 12.48], p = 0.0033.
    for seed, full, zero in ((1, 30.0, 20.0), (2, 32.0, 21.0), (3, 34.0, 25.0)):
        _synthetic(root, f"full-s{seed}", seed, full, env)
        _synthetic(root, f"b0-s{seed}", seed, zero, env, variant="budget=0", train={"budget": 0})
    # DUS vs random at 1n on seeds 1 and 2 only (random has no seed 3): differences 2 and 4.
    for seed, dus, rnd in ((1, 25.0, 23.0), (2, 27.0, 23.0)):
        _synthetic(root, f"dus1n-s{seed}", seed, dus, env, variant="budget=1n", train={"budget": "1n"})
        _synthetic(
            root,
            f"rnd1n-s{seed}",
            seed,
            rnd,
            env,
            variant="selection=random,budget=1n",
            train={"budget": "1n", "selection": "random"},
        )
    _synthetic(root, "dus1n-s3", 3, 26.0, env, variant="budget=1n", train={"budget": "1n"})
    runs, _ = load_runs(root)
    records = paired_records(group_runs(runs))
    spal = next(r for r in records if r["kind"] == "spal-vs-budget-0" and r["metric"] == "mAP")
    assert spal["seeds"] == [1, 2, 3] and spal["mean"] == pytest.approx(10.0)
    half = 4.302652729911275 / 3**0.5
    assert (spal["low"], spal["high"]) == pytest.approx((10 - half, 10 + half))
    assert spal["p_value"] == pytest.approx(0.003311, abs=1e-5)
    assert spal["verdict"] == "distinguishable: full better"
    dus = next(r for r in records if r["comparison"] == "DUS vs random at budget 1n" and r["metric"] == "mAP")
    assert dus["seeds"] == [1, 2] and dus["mean"] == pytest.approx(3.0)
    assert dus["verdict"] == "not distinguishable at 2 seeds"
    # The "full" run is DUS at 2n; no random run there: one line, not a crash.
    [at_2n] = [r for r in records if r["comparison"] == "DUS vs random at budget 2n"]
    assert at_2n["metric"] is None and at_2n["note"] == "cannot be compared: no random-selection runs in this set"
    # Budget 0 selects nothing: DUS vs random is not asked there.
    assert not [r for r in records if r["comparison"] == "DUS vs random at budget 0"]
    assert [r["comparison"] for r in records if r["metric"] == "mAP"] == [
        "SPAL (full) vs budget 0",
        "DUS vs random at budget 1n",
    ]
    paired = _section(build_report(root), "## Paired comparisons")
    row = _row(paired, "| SPAL (full) vs budget 0 ", "| mAP ")
    assert "| 1, 2, 3 " in row and "| +10.00 [+7.52, +12.48] " in row and "| 0.003 " in row
    assert "distinguishable: full better" in row
    assert "DUS vs random at budget 2n: cannot be compared: no random-selection runs in this set." in paired


def test_a_missing_variant_is_said_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "results"
    env = _env("a", "2026-01-01T10:00:00+00:00")
    _synthetic(root, "lam-s1", 1, 10.0, env, variant="lambda_sp=0")
    _synthetic(root, "lam-s2", 2, 12.0, env, variant="lambda_sp=0")
    report = build_report(root)
    paired = _section(report, "## Paired comparisons")
    assert "SPAL (full) vs budget 0: cannot be compared: no `full` runs in this set." in paired
    ablation = _section(report, "## Ablation")
    assert "cannot be compared: no `full` runs in this set" in _row(ablation, "| lambda_sp=0 ", "lam-s1")


def test_training_bands_average_the_seeds_epoch_by_epoch() -> None:
    run_a = [{"epoch": 0, "queries_spent": 10}, {"epoch": 1, "queries_spent": 20, "mAP": 30.0}]
    run_b = [
        {"epoch": 0, "queries_spent": 30},
        {"epoch": 1, "queries_spent": 99, "mAP": 0.0},
        {"epoch": 1, "queries_spent": 40, "mAP": 34.0},  # resumed: the last row of an epoch counts
    ]
    bands = training_bands([run_a, run_b, [{"epoch": 2, "mAP": 50.0}]])
    assert bands["mAP"] == [
        {"x": 1.0, "mean": 32.0, "std": pytest.approx(2**0.5 * 2), "n": 2},
        {"x": 2.0, "mean": 50.0, "std": pytest.approx(float("nan"), nan_ok=True), "n": 1},
    ]
    assert [(p["x"], p["mean"]) for p in bands["queries_spent"]] == [(0.0, 20.0), (1.0, 30.0)]
    assert bands["cost"] == [{"x": 30.0, "mean": 32.0, "std": pytest.approx(2 * 2**0.5), "n": 2}]


def test_training_figure_draws_one_line_a_variant_at_any_number_of_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    root = tmp_path / "results"
    env = _env("a", "2026-01-01T10:00:00+00:00")
    for seed in range(1, 11):
        for variant in ("full", "lambda_sp=0"):
            curve = [{"epoch": e, "queries_spent": 10 * e, "mAP": 5.0 * e + seed} for e in range(3)]
            _synthetic(root, f"{variant}-s{seed}", seed, 20.0 + seed, env, variant=variant, metrics=curve)
    drawn: dict[str, Figure] = {}

    def keep(fig: Figure, path: Any, **kwargs: Any) -> None:
        drawn[Path(path).name] = fig

    monkeypatch.setattr(Figure, "savefig", keep)
    write_report(root)
    figure = drawn["runs-synthetic-market1501-ci.png"]
    for ax in figure.axes:
        assert len(ax.get_lines()) == 2  # 20 runs, 2 variants
    labels = [t.get_text() for t in figure.axes[2].get_legend().get_texts()]
    assert labels == ["full (n=10)", "lambda_sp=0 (n=10)"]


def _cells(section: str, run_id: str) -> dict[str, str]:
    """The Markdown table row of ``run_id`` as ``{column header: cell}``."""
    lines = section.splitlines()
    header = next(line for line in lines if line.startswith("| run "))
    row = _row(section, f"| {run_id} ")
    return dict(zip((c.strip() for c in header.strip("|").split("|")), (c.strip() for c in row.strip("|").split("|"))))


def test_runs_listing_shows_layout_and_weights_and_flags_paper_runs_that_differ(results: Path) -> None:
    weights = {"name": "resnet50-imagenet.pth", "sha256": "ab" * 32}
    make_run(
        results,
        "market1501",
        "paper",
        "m-as-paper",
        3,
        {"mAP": 71.0, "bn_batch": 16, "pretrained": weights, "precision": "bf16"},
        config={"world_size": 4},
    )
    listing = _section(build_report(results), "## Runs")
    as_paper = _cells(listing, "m-as-paper")
    assert as_paper["world size"] == "4" and as_paper["BN batch"] == "16"
    assert as_paper["pretrained"] == "resnet50-imagenet.pth (sha256 abababababab)"
    assert as_paper["paper layout/weights"] == "as the paper"
    assert as_paper["precision"] == "bf16"
    # Written before the keys existed: BN batch from the config, weights not recorded.
    old = _cells(listing, "m-full-s1")
    assert old["world size"] == "1" and old["BN batch"] == "16 (from config)" and old["pretrained"] == "n/a"
    assert old["precision"] == "n/a"
    assert old["paper layout/weights"] == "differs from the paper's layout/weights (no pretrained weights recorded)"
    no_groups = _cells(listing, "m-b0-s1")
    assert no_groups["paper layout/weights"] == (
        "differs from the paper's layout/weights (BN batch 64, paper 16; no pretrained weights recorded)"
    )
    assert _cells(listing, "s-full-s1")["paper layout/weights"] == "-"  # not a paper-protocol run


GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]


def test_report_says_which_sets_are_committed_and_which_are_local(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "checkout"
    root = repo / "results"
    _synthetic(root, "reference-s1", 1, 10.0, _env("a", "2026-01-01T10:00:00+00:00"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "."], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "reference"], cwd=repo, check=True)
    _synthetic(root, "mine-s1", 1, 20.0, _env("b", "2026-02-01T10:00:00+00:00"))
    sets = _section(build_report(root), "## Run sets")
    assert "| local run (untracked) " in _row(sets, "| bbbbbbbbbbbb ")
    assert "| committed reference data " in _row(sets, "| aaaaaaaaaaaa ")


def test_report_runs_on_the_committed_results(tmp_path: Path) -> None:
    committed = Path(__file__).resolve().parents[2] / "results"
    copy = tmp_path / "results"
    shutil.copytree(committed, copy)
    assert main(["--results", str(copy)]) == 0
    report = (copy / "REPORT.md").read_text()
    assert "## Run sets" in report and "## Paired comparisons" in report


def test_gpu_section_states_device_phases_and_the_goals_from_a_record(tmp_path: Path) -> None:
    from harness.bench.headlines import gpu_protocol_headline, headline_of
    from harness.report import gpu_protocol_section

    record = {
        "device": "NVIDIA H200", "torch": "2.14.1", "git_commit": "0123456789abcdef", "epochs_timed": 2,
        "per_epoch": [
            {"epoch": 0, "label_phase_s": 2.5, "train_s": 9.0, "evaluation_s": 0.0, "checkpoint_s": 0.2},
            {"epoch": 1, "label_phase_s": 2.0, "train_s": 4.0, "evaluation_s": 7.5, "checkpoint_s": 0.1},
        ],
        "startup_s": 20.0, "warmup_s": 5.0, "compile_s": 0.0, "evaluation_s": 8.0, "test_decode_s": 9.0,
        "label_phase_s": 2.0, "train_img_s": 6400.0, "ceiling_img_s": 8000.0, "ratio": 0.8,
        "projected_total_s": 400.0, "projection_formula": "projected_total_s = ...",
        "targets": {"projected_total_s": 900.0, "ratio": 0.85, "label_phase_s": 3.0},
        "meets_targets": {"projected_total_s": True, "ratio": False, "label_phase_s": True},
    }  # fmt: skip
    text = "\n".join(gpu_protocol_section([("gpu-protocol-msmt17-nvidia-h200.json", record)]))
    text = re.sub(r" +", " ", text)  # the tables' column padding
    assert "NVIDIA H200" in text and "torch 2.14.1" in text and "0123456789ab" in text
    assert "| 1 | 2.00 s | 4.00 s | 7.50 s | 0.10 s |" in text
    assert "| 50-epoch protocol (projected) | 400.00 s | <= 900.0 s | met |" in text
    assert "80.0% (6400.0 of 8000.0 img/s) | >= 85% | not met" in text
    assert "| label phase an epoch | 2.00 s | <= 3.0 s | met |" in text
    assert "No GPU record yet" in "\n".join(gpu_protocol_section([]))
    # The benchmark writes this headline into its file; a file from before it did gets the same one.
    [row] = gpu_protocol_headline("gpu-protocol-msmt17-nvidia-h200.json", record)
    assert row["ratio"] == "80.0% of the ceiling" and row["machine"] == "NVIDIA H200" and row["commit"] == "0123456"
    assert headline_of("gpu-protocol-msmt17-nvidia-h200.json", record) == [row]


def test_runs_listing_names_the_precision_also_of_runs_from_before_the_flag(results: Path) -> None:
    make_run(results, "market1501", "paper", "m-amp", 7, {"mAP": 70.0}, train={"amp": True})
    make_run(results, "market1501", "paper", "m-fp32", 8, {"mAP": 70.0}, train={"amp": False})
    make_run(results, "market1501", "paper", "m-auto", 9, None, train={"precision": None})
    listing = _section(build_report(results), "## Runs")
    assert _cells(listing, "m-amp")["precision"] == "bf16 (amp)"
    assert _cells(listing, "m-fp32")["precision"] == "fp32"
    assert _cells(listing, "m-auto")["precision"] == "default (bf16 on CUDA, fp32 on the CPU)"
