#!/usr/bin/env bash
# The action's gate step, also usable from any CI as it is: runs
#   rolloutctl --json $COMMAND $ROLLOUT --markdown rolloutctl-gate.md --junit rolloutctl-gate.xml
# keeps the JSON in rolloutctl-gate.json, writes verdict, decision, exit-code and report to
# $GITHUB_OUTPUT (when set), and maps the exit code to the job's outcome:
#   0 passed, 12 paused (a warning)                      -> the step succeeds
#   11 inconclusive: succeeds with a warning, fails with FAIL_ON_INCONCLUSIVE=true
#   10 gate failed, 1-5 an error                         -> the step fails
# rolloutctl appends the Markdown summary to $GITHUB_STEP_SUMMARY itself.
set -uo pipefail
command="${COMMAND:-check}"
case "$command" in
  check | advance | monitor) ;;
  *)
    echo "::error::command must be check, advance or monitor, not '$command'"
    exit 2
    ;;
esac
read -r -a extra <<< "${ARGS:-}"
[[ -z "${ROLLOUTCTL_STATE:-}" ]] && unset ROLLOUTCTL_STATE
rolloutctl --json "$command" "${ROLLOUT:?the rollout input is required}" \
  --markdown rolloutctl-gate.md --junit rolloutctl-gate.xml "${extra[@]}" > rolloutctl-gate.json
code=$?

field() {  # one top-level string of the JSON document ("" when absent)
  python3 -c 'import json, sys
try:
    value = json.load(open("rolloutctl-gate.json")).get(sys.argv[1])
except (OSError, ValueError):
    value = None
print("" if value is None else value)' "$1"
}
verdict="$(field verdict)"
decision="$(field decision)"
report="$(field report)"
message="$(field message)"
[[ -z "$message" ]] && message="$(field error)"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  {
    echo "verdict=${verdict:-error}"
    echo "decision=${decision}"
    echo "exit-code=${code}"
    echo "report=${report}"
  } >> "$GITHUB_OUTPUT"
fi

case "$code" in
  0) echo "rolloutctl: ${message}"; exit 0 ;;
  12) echo "::warning::rolloutctl paused: ${message}"; exit 0 ;;
  11)
    if [[ "${FAIL_ON_INCONCLUSIVE:-false}" == "true" ]]; then
      echo "::error::rolloutctl inconclusive: ${message}"
      exit 1
    fi
    echo "::warning::rolloutctl inconclusive (holding): ${message}"
    exit 0
    ;;
  10) echo "::error::rolloutctl gate failed: ${message}"; exit 1 ;;
  *) echo "::error::rolloutctl exit ${code}: ${message}"; exit 1 ;;
esac
