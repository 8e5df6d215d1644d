"""Synthetic request logs for an AI search product, for demos and for testing gates.

Real canary logs are hard to share and never contain the regression you want to rehearse, so
this package fabricates them: one row per request, with segments, latency, cost and quality
signals whose shapes (heavy latency tails, segment-dependent hallucination, sticky per-user
assignment) resemble production. Each scenario breaks the candidate in one known way, so a gate
can be checked against a known answer. There is data for every stage kind of a rollout:

- canary, ramp and A/B: `generate` (SCENARIOS, in .traffic), a sticky split between control
  and canary;
- shadow: `generate_shadow` (SHADOW_SCENARIOS, in .shadow), the control serves every request
  and the candidate answers most of them again in the background, paired by request_id;
- offline eval: `write_eval_runs` (EVAL_SCENARIOS, in .evals), a baseline and a candidate run
  of one eval set in a format rolloutctl.metrics.evalformats reads;
- post-launch monitoring: `generate_post_launch` (POST_LAUNCH_SCENARIOS, in .post_launch), all
  traffic on the candidate, against the pre-rollout baseline from `generate_baseline`.

`write` (in .files) puts any of these frames on disk as .jsonl, .csv or .parquet.

Everything is vectorised numpy and driven by one seeded generator: the same arguments give the
same frame, and different scenarios or canary percentages with the same seed share every random
draw, so they differ only where the scenario says they should. The shared machinery is private:
._population draws who asks what and when, ._answers how a model answers, ._rows builds the
frame, ._hashing supplies the draws that must not touch the generator, ._checks the argument
checks.
"""

from __future__ import annotations

from rolloutctl.simulate.evals import EVAL_FORMATS, EVAL_SCENARIOS, write_eval_runs
from rolloutctl.simulate.files import write
from rolloutctl.simulate.post_launch import (
    NEW_CATEGORY,
    POST_LAUNCH_SCENARIOS,
    generate_baseline,
    generate_post_launch,
)
from rolloutctl.simulate.shadow import SHADOW_SCENARIOS, USER_SIGNALS, generate_shadow
from rolloutctl.simulate.traffic import SCENARIOS, generate

__all__ = [
    "EVAL_FORMATS",
    "EVAL_SCENARIOS",
    "NEW_CATEGORY",
    "POST_LAUNCH_SCENARIOS",
    "SCENARIOS",
    "SHADOW_SCENARIOS",
    "USER_SIGNALS",
    "generate",
    "generate_baseline",
    "generate_post_launch",
    "generate_shadow",
    "write",
    "write_eval_runs",
]
