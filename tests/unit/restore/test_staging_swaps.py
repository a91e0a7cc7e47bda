"""The app moving caretaker's folders away for a moment at the worst instant of a move: right
when a journal lists its source or is written. Each test moves a folder away and back (as
the race test's swapper does) at one chosen call, so the interleaving is exact, not luck.

Whatever the instant, a run never reports a move that did not happen, and once the app has
put things back the next run finishes the move."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Iterator

import pytest

from restore.errors import UnsafeVolumeError
from restore.initcontainer.staging import Staging, entries
from restore.initcontainer.statedir import Volume
from tests.unit.restore.test_action import FakeRepository, files, run
from tests.unit.restore.test_staging import NEW, NOW, OLD, SNAP, opened, quarantined, stage, tree, write


@pytest.fixture
def staging(tmp_path: pathlib.Path) -> Iterator[Staging]:
    with opened(tmp_path) as held:
        yield held


def away_during(
    monkeypatch: pytest.MonkeyPatch, method: str, relative: str, folder: pathlib.Path
) -> Callable[[], None]:
    """At the first `Volume.<method>(relative)`, move `folder` away; return the app's move
    back (which, like the race test's swapper, gives up if the name is taken meanwhile)."""
    real = getattr(Volume, method)
    pending = [True]
    aside = folder.with_name(folder.name + ".swapped")

    def hooked(self: Volume, asked: str) -> object:
        if asked == relative and pending:
            pending.clear()
            folder.rename(aside)
        return real(self, asked)

    monkeypatch.setattr(Volume, method, hooked)

    def back() -> None:
        with contextlib.suppress(OSError):
            aside.rename(folder)

    return back


@contextlib.contextmanager
def moved_back_after(back: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        back()


def test_staging_away_while_the_journal_lists_it_is_not_taken_for_an_empty_download(
    tmp_path, staging: Staging, monkeypatch
):
    write(tmp_path, OLD)
    stage(staging, NEW)
    aside = staging.new_quarantine(NOW)
    back = away_during(monkeypatch, "existing", "staging/tree", staging.root)
    real_folder = Volume.folder

    def folder(self: Volume, relative: str) -> object:
        back()  # the app puts staging back before the journal is written
        return real_folder(self, relative)

    monkeypatch.setattr(Volume, "folder", folder)
    # stopping is fine; moving nothing in is not
    with moved_back_after(back), contextlib.suppress(UnsafeVolumeError):
        staging.apply(
            staging.commit(
                kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path), snapshot=SNAP
            )
        )
    monkeypatch.undo()
    with opened(tmp_path) as again:
        again.recover()
    assert tree(tmp_path) in ({**NEW, **quarantined(OLD)}, OLD)


def test_staging_away_while_the_journal_is_written_leaves_a_journal_the_next_run_finishes(
    tmp_path, staging: Staging, monkeypatch
):
    write(tmp_path, OLD)
    stage(staging, NEW)
    aside = staging.new_quarantine(NOW)
    journal = None
    back = away_during(monkeypatch, "folder", "staging", staging.root)
    with moved_back_after(back), contextlib.suppress(UnsafeVolumeError):
        journal = staging.commit(
            kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path), snapshot=SNAP
        )
        staging.apply(journal)
    monkeypatch.undo()
    with opened(tmp_path) as again:
        again.recover()  # the app stopped: this run must not be stuck on that journal
    assert tree(tmp_path) in ({**NEW, **quarantined(OLD)}, OLD)


def test_quarantine_away_while_the_rollback_lists_it_never_reports_the_volume_put_back(tmp_path, monkeypatch):
    (tmp_path / "app.db").write_text("broken")
    quarantine = tmp_path / ".caretaker" / "quarantine"
    real_commit = Staging.commit

    def commit(self: Staging, **kw: object) -> object:
        if kw["kind"] == "rollback":  # the app moves quarantine/ away as the rollback lists it
            back = away_during(monkeypatch, "existing", self.relative(kw["source"]), quarantine)
            with moved_back_after(back):
                return real_commit(self, **kw)
        return real_commit(self, **kw)

    monkeypatch.setattr(Staging, "commit", commit)
    outcome = run(tmp_path, FakeRepository({"app.db": "bad"}), check_cmd=("false",))
    monkeypatch.undo()
    if outcome.exit_code == 8:  # "the volume was put back as it was"
        assert files(tmp_path) == {"app.db": "broken"}
    else:
        assert outcome.exit_code in (10, 11), outcome
        assert outcome.quarantined is not None
        assert (pathlib.Path(outcome.quarantined) / "app.db").read_text() == "broken"
    if (tmp_path / "app.db").exists():
        return
    again = run(tmp_path, FakeRepository({"app.db": "bad"}), check_cmd=("false",))
    assert again.exit_code == 8, again
    assert files(tmp_path) == {"app.db": "broken"}


def test_an_earlier_quarantine_swapped_back_under_the_journals_name_is_not_blamed_on_the_data(
    tmp_path, staging: Staging
):
    """The app puts an earlier run's quarantine (holding `a.txt` under the same time) back
    where this run's fresh one was: the target's own `a.txt` cannot be set aside there. The run
    stops naming the entry in the way, not the user's `a.txt` as one that 'appeared'."""
    write(tmp_path, OLD)
    earlier = staging.new_quarantine(NOW)
    (earlier / "a.txt").write_text("an earlier run's")
    quarantine = earlier.parent
    quarantine.rename(tmp_path / "away")
    stage(staging, NEW)
    aside = staging.new_quarantine(NOW)
    assert aside == earlier
    journal = staging.commit(
        kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path), snapshot=SNAP
    )
    quarantine.rename(tmp_path / "away2")
    (tmp_path / "away").rename(quarantine)
    with pytest.raises(UnsafeVolumeError, match=r"quarantine/20260115T120005Z/a\.txt"):
        staging.apply(journal)
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert (earlier / "a.txt").read_text() == "an earlier run's"
