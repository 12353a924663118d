"""Recent: a rendering found again by its inputs, compared by value, never a stale one."""

from __future__ import annotations

from notifier.render.recent import Recent


def test_equal_keys_are_made_once_and_different_keys_each_their_own() -> None:
    made: list[object] = []

    def make(key: dict[str, object]) -> str:
        made.append(key)
        return f"text of {key['title']}"

    recent: Recent[dict[str, object], str] = Recent(size=2)
    assert recent.get({"title": "a", "n": [1]}, make) == "text of a"
    assert recent.get({"title": "a", "n": [1]}, make) == "text of a"  # an equal copy
    assert recent.get({"title": "a", "n": [2]}, make) == "text of a"  # differs deep down
    assert recent.get({"title": "b", "n": [1]}, make) == "text of b"
    assert len(made) == 3 and recent.hits == 1


def test_the_least_recently_used_goes_first() -> None:
    made: list[int] = []

    def make(key: int) -> int:
        made.append(key)
        return key * 10

    recent: Recent[int, int] = Recent(size=2)
    for key in (1, 2, 1, 3, 1, 2):  # 3 pushes out 2 (1 was used since): 2 is made again
        assert recent.get(key, make) == key * 10
    assert made == [1, 2, 3, 2]
