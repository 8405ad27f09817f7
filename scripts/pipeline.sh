#!/usr/bin/env bash
# The largest end-to-end pipeline that exists until the book lands (`make book` runs it):
# phantoms -> frozen-backbone embeddings. Outputs go to runs/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-cpu}
case "$PROFILE" in
  smoke) N=16; SIZE=112 ;;
  *) N=200; SIZE=224 ;;
esac
OUT=runs/pipeline-$PROFILE
mkdir -p "$OUT"
raddino phantom --out "$OUT/phantoms" --n "$N" --size "$SIZE" --seed 0 --views pa,ap,lateral
raddino phantom-sheet --out "$OUT/contact_sheet.png"
raddino embed --data "$OUT/phantoms" --weights random:vit_tiny --size "$SIZE" --patch-mean \
  --out "$OUT/embeddings.safetensors"
echo "pipeline ($PROFILE) done: $OUT"
