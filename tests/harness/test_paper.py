"""The paper tables in results/paper/: structure, the known bounds, lookups and validation messages."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import harness.paper
from harness.paper import (
    NOT_TRANSCRIBED,
    PAPER_DIR,
    REQUIRED_TABLES,
    PaperTableError,
    load_tables,
    main,
    paper_value,
)
from harness.protocols import load_protocol

# shared/paper_results.md, "Bounds that are known": (method, backbone, setting, Market mAP/R1, MSMT17 mAP/R1).
KNOWN_BOUNDS = [
    ("SpCL (unsupervised)", "ResNet-50", "no labels", (73.1, 88.1), (19.1, 42.3)),
    ("SpCL (unsupervised)", "IBN-ResNet-50", "no labels", (73.8, 88.4), (24.0, 48.9)),
    ("Cluster Contrast, DBSCAN", "ResNet-50", "no labels", (82.1, 92.3), (27.6, 56.0)),
    ("softmax baseline (torchreid)", "ResNet-50", "all labels", (70.4, 87.9), (33.9, 63.2)),
    ("BoT (fast-reid)", "ResNet-50", "all labels", (86.1, 94.4), (50.2, 74.1)),
]


@pytest.fixture()
def paper_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "paper"
    shutil.copytree(PAPER_DIR, folder)
    return folder


def _edit(folder: Path, name: str, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = folder / f"{name}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_required_tables_load_with_descriptions() -> None:
    tables = load_tables()
    assert set(REQUIRED_TABLES) <= set(tables)
    for name, table in tables.items():
        assert table["table"] == name
        assert table["description"] and table["how_to_fill_in"]
        assert set(table["datasets"]) == {"market1501", "msmt17"}


def test_spal_values_are_null_and_marked_not_transcribed() -> None:
    tables = load_tables()
    for name in ("spal_main", "spal_unsupervised_supervised", "spal_ablation"):
        for row in tables[name]["rows"]:
            assert row["status"] == NOT_TRANSCRIBED, (name, row["method"])
            for dataset in ("market1501", "msmt17"):
                assert all(value is None for value in row[dataset].values()), (name, row["method"])
    assert set(tables["spal_main"]["metrics"]) == {"mAP", "rank1", "rank5", "rank10", "queries"}


def test_ablation_rows_cover_the_protocol_variants() -> None:
    variants = {row["variant"] for row in load_tables()["spal_ablation"]["rows"]}
    protocol = load_protocol("paper", "market1501")
    assert variants == {"full"} | {entry["name"] for entry in protocol["ablation"]}
    assert {"selection=random", "clustering=plain", "lambda_sp=0"} <= variants


def test_bounds_are_the_known_rows_as_written() -> None:
    rows = load_tables()["bounds"]["rows"]
    assert len(rows) == len(KNOWN_BOUNDS)
    for row, (method, backbone, setting, market, msmt) in zip(rows, KNOWN_BOUNDS):
        assert (row["method"], row["backbone"], row["setting"]) == (method, backbone, setting)
        assert (row["market1501"]["mAP"], row["market1501"]["rank1"]) == market
        assert (row["msmt17"]["mAP"], row["msmt17"]["rank1"]) == msmt
        assert row["source"]


def test_paper_value_lookups() -> None:
    tables = load_tables()
    assert paper_value(tables["bounds"], "SpCL (unsupervised)", "market1501", "mAP", arch="resnet50") == 73.1
    assert paper_value(tables["bounds"], "SpCL (unsupervised)", "msmt17", "rank1", arch="resnet50_ibn_a") == 48.9
    assert paper_value(tables["spal_main"], "SPAL", "msmt17", "queries") is None
    assert paper_value(tables["spal_ablation"], "selection=random", "market1501", "mAP") is None
    with pytest.raises(KeyError, match="2 rows"):
        paper_value(tables["bounds"], "SpCL (unsupervised)", "market1501", "mAP")
    with pytest.raises(KeyError, match="no row for 'SPAL-X'"):
        paper_value(tables["spal_main"], "SPAL-X", "market1501", "mAP")
    with pytest.raises(KeyError, match="no metric 'rank20'"):
        paper_value(tables["spal_main"], "SPAL", "market1501", "rank20")
    with pytest.raises(KeyError, match="no data set 'cuhk03'"):
        paper_value(tables["spal_main"], "SPAL", "cuhk03", "mAP")


def test_a_filled_in_value_with_a_source_is_picked_up(paper_copy: Path) -> None:
    def fill(data: dict[str, Any]) -> None:
        row = data["rows"][0]
        row["market1501"]["mAP"] = 77.7
        del row["status"]
        row["source"] = "SPAL paper, Table 1"

    _edit(paper_copy, "spal_main", fill)
    assert paper_value(load_tables(paper_copy)["spal_main"], "full", "market1501", "mAP") == 77.7


ROW_EDITS = [
    (
        lambda d: d["rows"][0]["market1501"].update(mAP="abc"),
        "market1501.mAP = 'abc' must be a number or null",
    ),
    (lambda d: d["rows"][0]["market1501"].update(mAP=73.1), "remove the status"),
    (lambda d: d["rows"][0]["msmt17"].update(rank1=731), "not a percentage"),
    (
        lambda d: d["rows"][0]["msmt17"].update(rank_1=None),
        "'msmt17' must be an object with exactly the keys",
    ),
    (lambda d: d["rows"][0].pop("status"), 'needs a "source" string'),
    (lambda d: d["rows"][0].update(colour="red"), "unknown key(s) colour"),
]


@pytest.mark.parametrize(("edit", "message"), ROW_EDITS)
def test_validation_errors_name_the_file_and_row(
    paper_copy: Path, edit: Callable[[dict[str, Any]], Any], message: str
) -> None:
    _edit(paper_copy, "spal_main", edit)
    with pytest.raises(PaperTableError) as err:
        load_tables(paper_copy)
    text = str(err.value)
    assert "spal_main.json: row 0 (method 'SPAL', variant 'full')" in text
    assert message in text


def test_table_name_must_match_the_file(paper_copy: Path) -> None:
    _edit(paper_copy, "spal_main", lambda d: d.update(table="other"))
    with pytest.raises(PaperTableError, match="spal_main.json: 'table' is 'other'; it must equal the file name"):
        load_tables(paper_copy)


def test_row_errors_name_the_row(paper_copy: Path) -> None:
    _edit(paper_copy, "spal_ablation", lambda d: d["rows"][2]["market1501"].update(rank5=-1))
    with pytest.raises(PaperTableError, match=r"spal_ablation\.json: row 2 \(method 'w/o constrained clustering"):
        load_tables(paper_copy)


def test_missing_table_and_broken_json_are_reported(paper_copy: Path) -> None:
    (paper_copy / "bounds.json").unlink()
    with pytest.raises(PaperTableError, match="missing table file\\(s\\) bounds.json"):
        load_tables(paper_copy)
    (paper_copy / "bounds.json").write_text("{")
    with pytest.raises(PaperTableError, match="bounds.json: not valid JSON"):
        load_tables(paper_copy)


def test_cli_validates(paper_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(paper_copy)]) == 0
    assert "bounds.json: 5 rows, 20 of 20 values transcribed" in capsys.readouterr().out
    _edit(paper_copy, "bounds", lambda d: d["rows"][0].pop("source"))
    assert main([str(paper_copy)]) == 1
    assert "bounds.json: row 0" in capsys.readouterr().out


def test_module_docstring_explains_how_to_fill_in() -> None:
    doc = harness.paper.__doc__ or ""
    assert "How to fill in the paper's numbers" in doc
    assert "results/paper/" in doc and "not transcribed" in doc
