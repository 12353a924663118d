"""Where the daemon takes its compiled rules from (`compile_rules`, `Compiled`, `RuleMeta`):
the one compile path lives in notifier.rules.compile; this name stays for its importers."""

from __future__ import annotations

from notifier.rules.compile import (
    DEFAULT_META,
    Compiled,
    Problem,
    RuleMeta,
    RulesError,
    compile_rules,
    rules_variables,
)

__all__ = [
    "DEFAULT_META",
    "Compiled",
    "Problem",
    "RuleMeta",
    "RulesError",
    "compile_rules",
    "rules_variables",
]
