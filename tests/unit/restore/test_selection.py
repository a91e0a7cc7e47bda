"""Selections (--include, --exclude, the PATH of ls and dump) and snapshot filters, on plain
streams of paths in manifest order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from restore.errors import ConfigError, NoSnapshotError
from restore.filters import SnapshotFilter, pick
from restore.model import SnapshotInfo
from restore.nodes import DIR, FILE, SYMLINK, Node, diff_nodes, sort_key
from restore.retention import RetentionPolicy, select
from restore.selection import Selection

TREE = [
    ("app.db", FILE),
    ("conf", DIR),
    ("conf/app.yaml", FILE),
    ("conf/keys", DIR),
    ("conf/keys/server.key", FILE),
    ("conf/keys/server.pem", FILE),
    ("conf.bak", FILE),
    ("logs", DIR),
    ("logs/a.log", FILE),
    ("logs/old", DIR),
    ("logs/old/b.log", FILE),
]
ORDERED = sorted(TREE, key=lambda item: sort_key(item[0]))


def chosen(selection: Selection) -> list[str]:
    return [path for path, _ in selection.filter(ORDERED, lambda i: i[0], lambda i: i[1] == DIR)]


class TestSelection:
    def test_everything_without_patterns(self) -> None:
        assert chosen(Selection()) == [p for p, _ in ORDERED]

    def test_a_file_comes_with_the_folders_above_it(self) -> None:
        assert chosen(Selection(["conf/keys/server.key"])) == ["conf", "conf/keys", "conf/keys/server.key"]

    def test_a_folder_comes_with_everything_in_it(self) -> None:
        assert chosen(Selection(["conf/keys"])) == [
            "conf",
            "conf/keys",
            "conf/keys/server.key",
            "conf/keys/server.pem",
        ]

    def test_a_name_glob_matches_at_any_depth(self) -> None:
        assert chosen(Selection(["*.log"])) == ["logs", "logs/a.log", "logs/old", "logs/old/b.log"]

    def test_a_path_glob_is_anchored_and_stays_in_its_folder(self) -> None:
        assert chosen(Selection(["logs/*.log"])) == ["logs", "logs/a.log"]
        assert chosen(Selection(["logs/**.log"])) == ["logs", "logs/a.log", "logs/old", "logs/old/b.log"]

    def test_a_trailing_slash_names_the_top_level_folder(self) -> None:
        assert chosen(Selection(["old/"])) == []
        assert chosen(Selection(["logs/"]))[:2] == ["logs", "logs/a.log"]

    def test_exclude_takes_a_folder_away_with_its_contents(self) -> None:
        assert chosen(Selection(["conf"], ["keys"])) == ["conf", "conf/app.yaml"]
        assert "logs/old/b.log" not in chosen(Selection(exclude=["old"]))
        assert chosen(Selection(exclude=["*.key"])).count("conf/keys/server.pem") == 1

    def test_a_subtree_is_literal_and_ends_the_stream_early(self) -> None:
        seen: list[str] = []

        def path_of(item: tuple[str, str]) -> str:
            seen.append(item[0])
            return item[0]

        subtree = Selection.subtree("conf/keys")
        found = [p for p, _ in subtree.filter(ORDERED, path_of, lambda i: i[1] == DIR)]
        assert found == ["conf", "conf/keys", "conf/keys/server.key", "conf/keys/server.pem"]
        assert "logs/old/b.log" not in seen  # stopped once past the subtree
        assert not Selection.subtree("conf/*").selects("conf/app.yaml")

    def test_literal_paths(self) -> None:
        assert chosen(Selection.paths({"conf/app.yaml", "logs/old"})) == [
            "conf",
            "conf/app.yaml",
            "logs",
            "logs/old",
            "logs/old/b.log",
        ]

    @pytest.mark.parametrize(
        "pattern",
        ["", "/", "../etc/passwd", "conf/../../x", "a//b", "./a", ".caretaker/staging", "a\0b", "x" * 5000],
    )
    def test_hostile_patterns_are_refused_naming_them(self, pattern: str) -> None:
        with pytest.raises(ConfigError) as raised:
            Selection([pattern])
        assert raised.value.problems[0].key == "include"
        assert raised.value.problems[0].value == pattern


def node(path: str, kind: str = FILE, **fields: object) -> Node:
    base = {"mode": 0o644, "uid": 1, "gid": 1, "mtime_ns": 5, "size": 3, "content": b"c"}
    return Node(path, kind, **{**base, **fields})  # type: ignore[arg-type]


def test_diff_merges_two_sorted_streams() -> None:
    old = [node("a"), node("b"), node("c", DIR), node("c/x"), node("d"), node("e")]
    new = [
        node("a"),
        node("b", content=b"other", size=5),
        node("c", DIR, mtime_ns=9),
        node("c.txt"),
        node("d", mode=0o600),
        node("e", SYMLINK, target="a"),
    ]
    changes = [(c.kind, c.path) for c in diff_nodes(iter(old), iter(new))]
    assert changes == [
        ("changed", "b"),
        ("removed", "c/x"),
        ("added", "c.txt"),
        ("metadata", "d"),
        ("changed", "e"),
    ]


def snapshot(
    ident: str, hours: int, host: str = "web-0", tags: tuple[str, ...] = (), path: str = "/data"
) -> SnapshotInfo:
    moment = datetime(2026, 1, 15, tzinfo=UTC) + timedelta(hours=hours)
    return SnapshotInfo(id=ident, time=moment, files=1, dirs=0, bytes=1, host=host, tags=tags, path=path)


SNAPSHOTS = [
    snapshot("aaaa1111aaaa1111", 3, tags=("nightly",)),
    snapshot("aaaa2222aaaa2222", 2, host="web-1"),
    snapshot("bbbb3333bbbb3333", 1, tags=("nightly", "before-upgrade"), path="/srv/data/"),
]


class TestFilters:
    def test_latest_is_the_newest_that_matches(self) -> None:
        assert pick(SNAPSHOTS, "latest", SnapshotFilter(), "repo").id == "aaaa1111aaaa1111"
        assert pick(SNAPSHOTS, "latest", SnapshotFilter(host="web-1"), "repo").id == "aaaa2222aaaa2222"
        only = SnapshotFilter(tags=("nightly", "before-upgrade"))
        assert pick(SNAPSHOTS, "latest", only, "repo").id == "bbbb3333bbbb3333"
        assert pick(SNAPSHOTS, "latest", SnapshotFilter(path="/srv/data"), "repo").id == "bbbb3333bbbb3333"

    def test_a_prefix_must_be_unique_and_long_enough(self) -> None:
        assert pick(SNAPSHOTS, "bbbb", SnapshotFilter(), "repo").id == "bbbb3333bbbb3333"
        with pytest.raises(NoSnapshotError, match="ambiguous"):
            pick(SNAPSHOTS, "aaaa", SnapshotFilter(), "repo")
        with pytest.raises(NoSnapshotError, match="does not exist"):
            pick(SNAPSHOTS, "bbb", SnapshotFilter(), "repo")

    def test_a_filter_that_leaves_nothing_names_itself(self) -> None:
        with pytest.raises(NoSnapshotError, match="host=web-9, tag=nightly"):
            pick(SNAPSHOTS, "latest", SnapshotFilter(host="web-9", tags=("nightly",)), "repo")
        with pytest.raises(NoSnapshotError, match="host=web-1"):
            pick(SNAPSHOTS, "aaaa1111", SnapshotFilter(host="web-1"), "repo")

    def test_prune_applies_the_policy_to_the_filtered_snapshots_only(self) -> None:
        policy = RetentionPolicy(last=1).limited_to(SnapshotFilter(tags=("nightly",)))
        chosen = select(SNAPSHOTS, policy, datetime(2026, 2, 1, tzinfo=UTC))
        assert [s.id for s in chosen.remove] == ["bbbb3333bbbb3333"]
        assert chosen.reasons["aaaa2222aaaa2222"] == ("not tag=nightly",)
