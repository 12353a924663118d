"""The tokens a rules file needs, named also while the file has errors
(`missing_secrets_in_file`): never more than the compiled file needs, the same for a
plainly written file, and read as a stream whatever the file's size."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from notifier.preflight import missing_secrets, missing_secrets_in_file
from notifier.rules.compile import MAX_BYTES
from notifier.rules.loader import load_file
from notifier.settings import Settings

NO_TOKENS = Settings(_env_file=None)  # type: ignore[call-arg]
HOOK = "https://discord.com/api/webhooks/123456789012345678/" + "Ab" * 34
BROKEN = "  - {name: zz, when: nope, notify: [me]}\n"  # one more rule, and an error
RULES = "rules:\n  - {name: a, when: live, notify: [me]}\n"

# name: (destinations and bots, whether a broken copy names the same as the compiled file)
FILES = {
    "plain": (
        "destinations:\n  me: {telegram: {chat_id: 1}}\n  room: {discord: {channel_id: 2}}\n"
        f"  hook: {{discord: {{webhook_url: '{HOOK}'}}}}\n",
        True,
    ),
    "block style and quoted keys": (
        "destinations:\n  me:\n    'telegram':\n      chat_id: -1001234567890\n"
        "  room:\n    discord:\n      channel_id: 2\n      mention_role: 3\n",
        True,
    ),
    "null values": (
        "destinations:\n  me: {telegram: null, console: {}}\n"
        f"  hook: {{discord: {{webhook_url: '{HOOK}', channel_id: ~}}}}\n"
        "  tagged: {telegram: !!null '', console: {}}\n"
        "  spelled: {telegram: !<tag:yaml.org,2002:null> x, console: {}}\n",
        True,
    ),
    "bots on in every spelling": (
        "destinations:\n  me: {console: {}}\n"
        "bots: {telegram: {commands: 1}, discord: {commands: 'y'}}\n",
        True,
    ),
    "bots off": (
        "destinations:\n  me: {console: {}}\n"
        "bots: {telegram: {commands: false}, discord: {commands: off}}\n",
        True,
    ),
    "an anchor and an alias": (
        "destinations:\n  me: &tg {telegram: {chat_id: 1}}\n  copy: *tg\n",
        False,
    ),
    "a merge key": (
        "destinations:\n  me: &tg {telegram: {chat_id: 1}}\n  you:\n    <<: *tg\n",
        False,
    ),
    "a variable": (
        "destinations:\n  me: {console: {}}\nbots: {telegram: {commands: '${ON}'}}\n",
        False,
    ),
}


@pytest.mark.parametrize("name", FILES)
def test_a_broken_file_names_no_token_the_compiled_one_would_not(tmp_path: Path, name: str) -> None:
    text, same = FILES[name]
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(text + RULES)
    bad.write_text(text + RULES + BROKEN)
    needed = missing_secrets(load_file(good, env={"ON": "true"}), NO_TOKENS)
    named = missing_secrets_in_file(bad, NO_TOKENS)
    assert set(named) <= set(needed), (named, needed)
    if same:  # (for "null values" and "bots off": none at all)
        assert named == needed


def test_a_large_broken_file_is_read_as_a_stream(tmp_path: Path) -> None:
    rule = "  - {name: r%d, when: live, users: [streamer%d], notify: [me]}\n"
    bad = tmp_path / "bad.yaml"
    with bad.open("w") as out:
        out.write("destinations:\n  me: {telegram: {chat_id: 1}}\nrules:\n")
        out.writelines(rule % (n, n) for n in range(40_000))  # about 2.6 MB
        out.write(BROKEN)
    tracemalloc.start()
    try:
        named = missing_secrets_in_file(bad, NO_TOKENS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert named == ["destination 'me' needs NOTIFIER_TELEGRAM_TOKEN"]
    assert peak < 5_000_000  # the whole node tree would take well over 100 MB


def test_a_file_larger_than_the_compiler_takes_or_not_yaml_names_nothing(
    tmp_path: Path,
) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("destinations:\n  me: {telegram: {chat_id: 1}}\n#" + "x" * MAX_BYTES)
    assert missing_secrets_in_file(huge, NO_TOKENS) == []
    for content in (b"\xff\xfe\x00binary", b"destinations: [\n", b"- a\n- b\n"):
        odd = tmp_path / "odd.yaml"
        odd.write_bytes(content)
        assert missing_secrets_in_file(odd, NO_TOKENS) == []
    assert missing_secrets_in_file(tmp_path, NO_TOKENS) == []  # a folder
    assert missing_secrets_in_file(tmp_path / "missing.yaml", NO_TOKENS) == []
