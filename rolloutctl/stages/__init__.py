"""Stage kinds, one module each, behind one interface: `judge(look: StageLook) -> Judged`.

Every kind returns the same GateResult (a verdict, plain-language reasons and one row per
check), so the engine acts, records, reports, notifies and writes JSON, Markdown and JUnit the
same way for every stage. `registry.py` maps a playbook's `kind:` to its module; `base.py`
holds the shared types and row helpers; docs/architecture.md walks through adding a kind."""
