"""The search page reads one page of hits (and counts the rest), not the whole result."""

from __future__ import annotations

from pathlib import Path

from mailvault.index import open_index, search
from mailvault.vault.repository import Repository
from mailvault.web.actions import Actions
from mailvault.web.jobs import Jobs


def test_search_pages_split_the_result_newest_first(web_vault: Path, vault_password: str) -> None:
    with Repository.open(str(web_vault), vault_password.encode) as repo:
        actions = Actions(repo, Jobs())
        total, first = actions.search_page("note", None, "latest", 1, 50)
        total2, second = actions.search_page("note", None, "latest", 2, 50)
        _, beyond = actions.search_page("note", None, "latest", 3, 50)
        nothing = actions.search_page("zzznothingzzz", None, "latest", 1, 50)
        db = open_index(repo)
        try:
            every = search(db, "note")
        finally:
            db.close()
    assert total == total2 == len(every) >= 60
    assert len(first) == 50 and len(second) == total - 50 and beyond == []
    assert [r["blob"] for r in first + second] == [h.blob for h in every]  # same order, no gap, no repeat
    dates = [r["date"] for r in first + second]
    assert dates == sorted(dates, reverse=True)
    assert nothing == (0, [])
