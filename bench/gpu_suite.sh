#!/usr/bin/env bash
# The GPU figures of docs/PERFORMANCE.md in one go on one host with 2 GPUs (about 10 minutes):
#   1. one GPU each, side by side: OF-3B shape with the speed levers on, OF-9B shape;
#   2. OF-3B on 2 GPUs with FSDP FULL_SHARD at the same per-GPU batch (scaling);
#   3. OF-3B on 2 GPUs with FSDP at the 1-GPU run's global batch: 10 steps, a sharded checkpoint, then an
#      autoresumed run to step 20 (losses and data order against the 1-GPU run's first 20 steps).
# JSON results and logs go to $OUT. Run from the repository root with the project importable.
set -u
OUT=${OUT:-/tmp/flamingo-bench-out}
W=${W:-/tmp/flamingo-bench}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
B=bench/throughput.py
FAST="model.frozen_dtype=bf16 model.compile_blocks=true activation_checkpointing=false device_train_microbatch_size=64 train_data.num_workers=8"

# Corpus (enough for the 2-GPU runs) and random-init assets, shared by every run.
python3 -c "
from bench.synthetic import write_corpus
from bench.throughput import shape_assets
write_corpus('$W/corpus', n_pairs=2 * 29 * 64, n_docs=2 * 29 * 32)
for s in ('of3b', 'of9b'):
    shape_assets('$W', s)
" || exit 1

CUDA_VISIBLE_DEVICES=0 timeout 230 python3 $B yamls/flamingo-3b.yaml --shape of3b --work-dir "$W" \
  --json "$OUT/of3b-1gpu.json" $FAST > "$OUT/of3b-1gpu.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 230 python3 $B yamls/flamingo-9b.yaml --shape of9b --work-dir "$W" \
  --warmup 3 --steps 8 --json "$OUT/of9b-1gpu.json" parallelism_config=null model.frozen_dtype=bf16 \
  activation_checkpointing=true device_train_microbatch_size=64 train_data.num_workers=8 > "$OUT/of9b-1gpu.log" 2>&1 &
wait
tail -n 2 "$OUT/of3b-1gpu.log" "$OUT/of9b-1gpu.log"

timeout 160 python3 -m composer.cli.launcher -n 2 $B yamls/flamingo-3b.yaml --shape of3b --work-dir "$W" --json "$OUT/of3b-2gpu-fsdp.json" \
  $FAST parallelism_config.fsdp.sharding_strategy=FULL_SHARD > "$OUT/of3b-2gpu-fsdp.log" 2>&1
tail -n 2 "$OUT/of3b-2gpu-fsdp.log"

RESUME="--shape of3b --work-dir $W --warmup 0 model.frozen_dtype=bf16 activation_checkpointing=false \
  train_data.sources.laion.batch_size=32 train_data.sources.mmc4.batch_size=16 device_train_microbatch_size=32 \
  train_data.num_workers=4 parallelism_config.fsdp.sharding_strategy=FULL_SHARD run_name=resume-check \
  save_folder=$W/ckpt save_interval=10ba autoresume=true"
timeout 80 python3 -m composer.cli.launcher -n 2 $B yamls/flamingo-3b.yaml $RESUME --steps 9 --json "$OUT/of3b-2gpu-resume-a.json" \
  > "$OUT/resume-a.log" 2>&1
timeout 80 python3 -m composer.cli.launcher -n 2 $B yamls/flamingo-3b.yaml $RESUME --steps 19 --json "$OUT/of3b-2gpu-resume-b.json" \
  > "$OUT/resume-b.log" 2>&1
tail -n 2 "$OUT/resume-a.log" "$OUT/resume-b.log"
ls "$OUT"
