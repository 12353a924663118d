"""A rules file as a whole `RulesFile` (every rule model kept), for the commands that want
one; read through the one compile path, so the errors are the same as `check`'s."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from notifier.rules.compile import Problem, RulesError, compile_rules, compile_text, rules_variables
from notifier.rules.schema import RulesFile

__all__ = ["Problem", "RulesError", "load_file", "load_text"]


def load_file(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    env_file: str | Path | None = None,
    discord_api_url: str | None = None,
) -> RulesFile:
    """Read and validate a rules file; raises RulesError listing every problem."""
    compiled = compile_rules(
        path, env=env, env_file=env_file, discord_api_url=discord_api_url, keep_rules=True
    )
    return compiled.rules_file


def load_text(
    text: str,
    name: str = "<rules>",
    env: Mapping[str, str] | None = None,
    *,
    discord_api_url: str | None = None,
) -> RulesFile:
    """`load_file` on text: `env` is all `${VAR}` sees (default: the environment and ./.env)."""
    variables = rules_variables(env) if env is None else env
    compiled = compile_text(
        text, name, variables=variables, discord_api_url=discord_api_url, keep_rules=True
    )
    return compiled.rules_file
