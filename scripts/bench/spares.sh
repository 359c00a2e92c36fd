#!/usr/bin/env bash
# Spare launchers, before and after in one sitting: launch.sh's RunInstances → `exec true`
# figure with `serve --spare-launchers 0` (every launch moves its launcher into the instance's
# cgroup) and with the default pool, alternated ROUNDS times on the same binary; prints each
# p50 and the ratio of the medians.
#   sudo scripts/bench/spares.sh [N=40] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-40}; ROUNDS=${2:-2}
[ "$(id -u)" -eq 0 ] || { echo "spares.sh: needs root" >&2; exit 1; }
export EC2LAB_BIN=${EC2LAB_BIN:-target/release/ec2lab}
[ "$EC2LAB_BIN" != target/release/ec2lab ] || cargo build --release -q
off=(); on=()
p50() { grep '^ec2lab RunInstances' | head -1 | sed -E 's/.* p50 +([0-9.]+) ms.*/\1/'; }
for r in $(seq "$ROUNDS"); do
  a=$(EC2LAB_SERVE_ARGS="--spare-launchers 0" scripts/bench/launch.sh "$N" 1 | tee /dev/stderr | p50)
  b=$(scripts/bench/launch.sh "$N" 1 | tee /dev/stderr | p50)
  echo "round $r: launch→exec p50 without spares $a ms, with spares $b ms"
  off+=("$a"); on+=("$b")
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]; on = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(off), statistics.median(on)
print(f"median of the p50s: without {a:.2f} ms, with {b:.2f} ms; with/without = {b/a:.2f}x")
PY
