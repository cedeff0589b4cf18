#!/usr/bin/env bash
# Issue #16 item 6: held-out success on Sokoban 6x6 with one box after 15 minutes of training on this machine,
# for the default text policy and the pixel-only VL policy, each with and without the memory service.
#
#   bench/sokoban_15min.sh [RUNS_DIR] [SEED]      # about 70 minutes: four `atlasrl up` runs, one after another
#
# Each arm is `bench/seed_runs.py` (one `atlasrl up` run, held-out eval before and after on 128 seeds from
# run.eval_seed_start, never trained on); it prints its table and JSON line. The last line is one JSON object
# with every arm's before/after success and Wilson interval. Run it on a quiet machine: the four runs share
# nothing, and a loaded machine makes fewer updates in the same 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/sokoban-15min}
SEED=${2:-0}
mkdir -p "$RUNS"
TEXT_ENV=(--set actor.env_id=sokoban --set 'actor.env_config.size="6"' --set 'actor.env_config.num_boxes="1"'
          --set 'actor.env_config.text_mode="relative"' --set 'actor.env_config.max_actions_per_turn="1"')
# The VL preset's env config is an egocentric FrozenLake window; Sokoban gets the whole 6x6 map at 28 px per
# cell (168 px: 6x6 merged image tokens, one per cell) and no map in the text.
VL_ENV=(--set actor.env_id=sokoban
        --set 'actor.env_config={"size":"6","num_boxes":"1","text_mode":"none","outcome_text":"true","max_actions_per_turn":"1","cell_px":"28"}')
arm() {  # name preset args...
  local name=$1 preset=$2; shift 2
  echo "== $name (load $(cut -d' ' -f1 /proc/loadavg))"
  .venv/bin/python bench/seed_runs.py --preset "$preset" --seeds "$SEED" --runs-dir "$RUNS/$name" \
    --set run.duration_s=900 "$@" --out "$RUNS/$name/curve.png" | tee "$RUNS/$name.out"
}
arm text-off frozenlake-tiny "${TEXT_ENV[@]}" --set processes.memory=false
arm text-on frozenlake-tiny "${TEXT_ENV[@]}" --set processes.memory=true --set actor.memory_hints=text \
    --set actor.memory_risk=true
arm vl-off frozenlake-vl "${VL_ENV[@]}" --set processes.memory=false
arm vl-on frozenlake-vl "${VL_ENV[@]}" --set processes.memory=true --set actor.memory_hints=overlay
.venv/bin/python - "$RUNS" <<'PY'
import json, sys
arms = {}
for name in ("text-off", "text-on", "vl-off", "vl-on"):
    line = [l for l in open(f"{sys.argv[1]}/{name}.out") if l.startswith('{"bench"')][-1]
    r = json.loads(line)["results"][0]
    arms[name] = {"before": r["before"]["success"], "after": r["after"]["success"], "after_ci": r["after"]["ci"],
                  "updates": r["policy_version"], "run_dir": r["run_dir"]}
print(json.dumps({"bench": "sokoban_15min", "arms": arms}))
PY
