"""Session annotations: the append-only log, its verbs, and what a dataset's manifest makes of it (real Zarr on disk)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from assets_store import finalize_session
from assets_store.annotations import annotate, read_annotations
from assets_store.dataset import build_manifest, curate, episode_content_hash
from assets_store.hashing import directory_sha256
from assets_store.synthetic import write_synthetic_episode
from pipeline.cli.app import build_app

runner = CliRunner()


@pytest.fixture
def session(layout):
    for seed in range(3):
        write_synthetic_episode(layout, "s1", steps=6, seed=seed, workers=1)
    finalize_session(layout, "s1")
    return "s1"


def cli(*args):
    return runner.invoke(build_app(), [*args])


def test_verbs_append_to_the_log_and_never_touch_the_session(layout, session):
    before = directory_sha256(layout.session_dir(session))
    log = layout.annotations_path(session)
    assert log.parent == layout.session_dir(session).parent  # beside the session, not in it

    res = cli("episodes", "label", "s1/1", "failure", "--by", "ana")
    assert res.exit_code == 0, res.output
    first = log.read_bytes()
    res = cli("episodes", "exclude", "s1/episode_000002.zarr", "--reason", "camera cable loose", "--by", "ben")
    assert res.exit_code == 0, res.output
    assert log.read_bytes().startswith(first)  # appended, never rewritten
    second = log.read_bytes()
    res = cli("episodes", "include", "s1/2")  # who: $USER
    assert res.exit_code == 0, res.output
    assert log.read_bytes().startswith(second)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["episode"], e["action"], e["by"]) for e in lines] == [
        ("episode_000001.zarr", "label", "ana"), ("episode_000002.zarr", "exclude", "ben"),
        ("episode_000002.zarr", "include", lines[2]["by"])]
    assert lines[0]["label"] == "failure" and lines[1]["reason"] == "camera cable loose"
    assert all(isinstance(e["at"], float) for e in lines)
    assert directory_sha256(layout.session_dir(session)) == before  # the finalized session is unchanged

    notes = read_annotations(layout, session)
    assert notes.of("episode_000001.zarr").label == "failure"
    assert notes.of("episode_000002.zarr").excluded is None and notes.problems == []


@pytest.mark.parametrize("args, expected", [
    (("label", "s1/7", "success"), "no episode 's1/7'"),
    (("label", "nosuch/0", "success"), "no episode 'nosuch/0'"),
    (("label", "s1", "success"), "expected SESSION/N"),
    (("label", "s1/0", "great"), "label: expected one of success, failure, got 'great'"),
    (("exclude", "s1/0", "--reason", "  "), "--reason: expected why"),
    (("exclude", "s1/0"), "--reason: expected why"),
])
def test_a_bad_reference_label_or_reason_is_one_error_line_and_writes_nothing(layout, session, args, expected):
    res = cli("episodes", *args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert res.output.startswith("error:") and expected in " ".join(res.output.split()), res.output
    assert not layout.annotations_path(session).exists()


def test_concurrent_appends_are_all_kept_whole(layout, session):
    """Four processes append at once: every line arrives whole, none lost or interleaved."""
    code = textwrap.dedent(f"""
        import sys
        from assets_store import StoreLayout
        from assets_store.annotations import annotate
        layout = StoreLayout({str(layout.root)!r})
        for i in range(40):
            annotate(layout, "s1", i % 3, "exclude", by=sys.argv[1], reason="r" * 300 + str(i))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    lines = layout.annotations_path(session).read_text().splitlines()
    assert len(lines) == 160
    bodies = [json.loads(line) for line in lines]
    assert sorted((b["by"], b["reason"][300:]) for b in bodies) == sorted(
        (f"w{n}", str(i)) for n in range(4) for i in range(40))
    assert read_annotations(layout, session).problems == []


def test_a_bad_line_is_named_and_the_rest_of_the_log_applies(layout, session):
    annotate(layout, session, 0, "exclude", by="ana", reason="blurry")
    log = layout.annotations_path(session)
    with log.open("ab") as f:
        f.write(b'{"episode": "episode_000001.zarr", "action": "label", "by": "x", "at": 1.0, "label": "meh"}\n')
        f.write(b"not json\n")
        f.write(b'{"episode": "episode_000002.zarr", "action": "label", "by": "x", "at": 1.0, "label": "fail')  # torn
    annotate(layout, session, 1, "label", by="ben", label="failure")  # starts on its own line

    notes = read_annotations(layout, session)
    assert [p.split(": ", 1)[0] for p in notes.problems] == [f"{log}:2", f"{log}:3", f"{log}:4"]
    assert "label: expected one of success, failure, got 'meh'" in notes.problems[0]
    assert notes.of("episode_000000.zarr").excluded == "blurry"
    assert notes.of("episode_000001.zarr").label == "failure"
    assert notes.of("episode_000002.zarr").label is None

    res = cli("episodes", "list", "--store", str(layout.root))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "blurry" in text and "failure" in text and f"{log.name}:3" in text


def test_manifest_records_the_annotations_and_its_id_follows_them(layout, session):
    eps = [(session, f"episode_{i:06d}.zarr") for i in range(3)]
    rows = [(s, e, episode_content_hash(layout.session_dir(s) / e), 6) for s, e in eps]

    def manifest(keep_failed=False):
        kept, record = curate(eps, {session: read_annotations(layout, session)}, keep_failed=keep_failed)
        return build_manifest([r for r in rows if r[:2] in kept], annotations=record)

    plain = manifest()
    assert "annotations" not in plain.to_json()  # unannotated datasets keep the id they always had
    assert plain.id == build_manifest(rows).id

    annotate(layout, session, 0, "label", by="ana", label="success")
    labelled = manifest()
    assert len(labelled.episodes) == 3 and labelled.id != plain.id
    assert labelled.annotations == {"s1/episode_000000.zarr": {"label": "success"}}

    annotate(layout, session, 1, "label", by="ana", label="failure")
    assert [e.episode for e in manifest().episodes] == ["episode_000000.zarr", "episode_000002.zarr"]
    assert len(manifest(keep_failed=True).episodes) == 3

    annotate(layout, session, 2, "exclude", by="ana", reason="dropped the cube")
    assert [e.episode for e in manifest().episodes] == ["episode_000000.zarr"]
    annotate(layout, session, 2, "include", by="ana")
    assert [e.episode for e in manifest().episodes] == ["episode_000000.zarr", "episode_000002.zarr"]


def test_an_oversized_or_unreadable_log_is_one_named_error(layout, session, monkeypatch):
    import assets_store.annotations as annotations

    annotate(layout, session, 0, "label", by="ana", label="success")
    monkeypatch.setattr(annotations, "MAX_LOG_BYTES", 10)
    with pytest.raises(annotations.StoreError, match=r"s1\.annotations\.jsonl: annotation log of \d+ bytes, "
                                                     r"expected at most 10"):
        read_annotations(layout, session)
    res = cli("episodes", "list", "--store", str(layout.root))
    assert res.exit_code == 0 and "expected at most 10" in " ".join(res.output.split())  # the episodes still listed
    assert "episode_000002.zarr" in res.output
