"""``dataflow verify``: a clean delivery passes; each kind of damage is caught and named."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.consumer.helpers import at, events
from dataflow_assets_tests.support import event, make_harness, reported_files, reports


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A destination root with two live generations of flow ``f`` (CSV) in folder ``out``."""
    root = tmp_path_factory.mktemp("delivered")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mp.setenv("DATAFLOW_STAGING_DIR", str(root / "staging"))  # restored on exit
        h = make_harness(root)
        mp.setenv("DATAFLOW_EVENTS_DB", str(h.db))
        flow = h.flow(max_rows_per_file=5)
        h.ingest(events(1, 12, hours=(10, 11)))
        assert h.export(flow).success
        h.ingest([event(100, at(9), page="/late")])
        assert h.export(flow).success
        h.instance.dispose()
    yield h.out


@pytest.fixture
def dest(delivered: Path, tmp_path: Path) -> Path:
    """A private copy of the delivery to damage: the DEST ``<copy>/out``."""
    shutil.copytree(delivered, tmp_path / "root")
    return tmp_path / "root" / "out"


def _files(dest: Path) -> list[Path]:
    return [dest.parent / p for p in reported_files(dest)]


def _verify(run: Run, dest: Path, *extra: str) -> tuple[int, str]:
    code, out, err = run("verify", dest, "--flow", "f", *extra)
    assert "Traceback" not in err
    return code, out


def _problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("PROBLEM")]


def test_a_clean_delivery_passes(run: Run, dest: Path) -> None:
    code, out = _verify(run, dest)
    assert code == 0, out
    files = len(_files(dest))
    assert (
        f"ok: flow f at {dest}: 2 report(s) (2 live, 0 regeneration), {files} file(s), 12 rows"
        in out
    )
    assert "0 problem(s)" in out


def test_a_deleted_file_is_missing(run: Run, dest: Path) -> None:
    victim = _files(dest)[1]
    victim.unlink()
    code, out = _verify(run, dest)
    assert code == 1
    assert _problems(out) == [
        f"PROBLEM missing: {victim.relative_to(dest)}: reported, but not there"
    ]


def test_a_truncated_file_is_caught_even_by_a_quick_verify(run: Run, dest: Path) -> None:
    victim = _files(dest)[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    for extra in ((), ("--quick",)):
        code, out = _verify(run, dest, *extra)
        assert code == 1
        [problem] = _problems(out)
        assert problem.startswith(f"PROBLEM truncated: {victim.relative_to(dest)}")


def test_an_unreported_file_is_caught(run: Run, dest: Path) -> None:
    source = _files(dest)[0]
    stray = source.with_name(f"data_{uuid.uuid4()}_001_0_0.csv.gz")
    shutil.copyfile(source, stray)
    code, out = _verify(run, dest)
    assert code == 1
    [problem] = _problems(out)
    assert problem.startswith(f"PROBLEM unreported: {stray.relative_to(dest)}")


def test_a_tampered_file_of_the_same_size_is_caught(run: Run, dest: Path) -> None:
    victim = _files(dest)[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out = _verify(run, dest)
    assert code == 1
    [problem] = _problems(out)
    assert problem.startswith(f"PROBLEM checksum mismatch: {victim.relative_to(dest)}")
    assert _verify(run, dest, "--quick")[0] == 0  # sizes only: not seen


def _manifest(report: Path) -> Path:
    return report.with_name(report.name.replace(".report", ".manifest.json"))


def test_a_file_in_two_reports_is_caught(run: Run, dest: Path) -> None:
    first, second = reports(dest)
    extra = first.read_text().splitlines()[0]
    manifest = json.loads(_manifest(second).read_text())
    entry = next(f for f in json.loads(_manifest(first).read_text())["files"] if f["path"] == extra)
    manifest["files"].append(entry)
    manifest["rows"] += entry["rows"]
    _manifest(second).write_text(json.dumps(manifest))
    second.write_text("\n".join(sorted([*second.read_text().splitlines(), extra])) + "\n")
    code, out = _verify(run, dest)
    assert code == 1
    assert [p.split(":")[0] for p in _problems(out)] == ["PROBLEM reported twice"]


@pytest.mark.parametrize("damage", ["deleted", "not json", "disagrees"])
def test_a_bad_manifest_is_caught(run: Run, dest: Path, damage: str) -> None:
    report = reports(dest)[0]
    manifest = _manifest(report)
    if damage == "deleted":
        manifest.unlink()
    elif damage == "not json":
        manifest.write_text("{ truncated")
    else:  # the report lost a line
        report.write_text("\n".join(report.read_text().splitlines()[1:]) + "\n")
    code, out = _verify(run, dest)
    assert code == 1
    kinds = sorted(p.split(":")[0] for p in _problems(out))
    if damage == "disagrees":
        assert kinds == ["PROBLEM bad report", "PROBLEM unreported"]
    else:
        # Without a manifest nothing says what the report's files should be: they count as
        # unreported too.
        assert kinds[0] == "PROBLEM bad manifest"
        assert set(kinds[1:]) == {"PROBLEM unreported"}


def test_a_wrong_flow_name_finds_nothing(run: Run, dest: Path) -> None:
    code, out, _err = run("verify", dest, "--flow", "other")
    assert code == 1 and "nothing delivered" in out


def test_load_refuses_a_tampered_file(run: Run, dest: Path, tmp_path: Path) -> None:
    victim = _files(dest)[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    db = tmp_path / "warehouse.duckdb"
    code, _out, err = run("load", dest, "--flow", "f", "--into", db)
    assert code == 1
    assert "SHA-256 differs from its manifest" in err and "re-run to resume" in err


def test_load_does_not_reread_what_it_loaded(run: Run, dest: Path, tmp_path: Path) -> None:
    """Files and manifests cleaned up after they were loaded do not block later loads."""
    db = tmp_path / "warehouse.duckdb"
    assert run("load", dest, "--flow", "f", "--into", db)[0] == 0
    first = reports(dest)[0]
    _manifest(first).unlink()
    _files(dest)[0].unlink()
    code, out, err = run("load", dest, "--flow", "f", "--into", db)
    assert code == 0, err
    assert "loaded 0 generation(s)" in out and "2 generation(s) were already loaded" in out
    assert _verify(run, dest)[0] == 1  # verify still reads everything


def _rewindow(dest: Path, new_from: int) -> tuple[str, str]:
    """Hand-edit the second live manifest's window ``from``; the two generations' ids."""
    first, second = sorted((dest / "f").glob("*_delivery.manifest.json"))
    body = json.loads(second.read_text())
    body["window"]["from"] = new_from
    second.write_text(json.dumps(body))
    return json.loads(first.read_text())["generation_id"], body["generation_id"]


@pytest.mark.parametrize(("new_from", "kind"), [(13, "gap"), (11, "overlap")])
def test_a_gap_or_an_overlap_in_the_chain_is_a_problem(
    run: Run, dest: Path, new_from: int, kind: str
) -> None:
    before, after = _rewindow(dest, new_from)
    code, out = _verify(run, dest)
    assert code == 1, out
    [problem] = _problems(out)
    assert problem.startswith(f"PROBLEM {kind}: f/") and before in problem and after in problem


@pytest.mark.parametrize("new_from", [13, 11])
def test_load_stops_before_a_gap_or_an_overlap(
    run: Run, dest: Path, tmp_path: Path, new_from: int
) -> None:
    before, after = _rewindow(dest, new_from)
    db = tmp_path / "w.duckdb"
    code, _out, err = run("load", dest, "--flow", "f", "--into", db)
    assert code == 1 and before in err and after in err and "--across-gaps" in err
    with duckdb.connect(str(db), read_only=True) as con:
        # the first generation alone (one of its 12 events is filtered out)
        assert con.execute("SELECT count(*) FROM events").fetchone() == (11,)
    code, _out, err = run("load", dest, "--flow", "f", "--into", db, "--across-gaps")
    assert code == 0, err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (12,)
