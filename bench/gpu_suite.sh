#!/usr/bin/env bash
# The multi-GPU figures of docs/PERFORMANCE.md in one go on one host with 4 GPUs (about 8 minutes). Two
# lanes of two GPUs each run side by side:
#   lane 0-1: OF-3B on one GPU with every speed setting (GPU 0) and without the two step-time levers
#             (GPU 1); then OF-3B on both with FSDP FULL_SHARD at the same per-GPU batch (scaling); then
#             FSDP with the last 2 LM layers unfrozen (what trains follows model.trainable).
#   lane 2-3: OF-3B with only one of the two levers each (GPU 2: scheduled GC, GPU 3: fixed LAION length);
#             then FSDP at the 1-GPU run's global batch: 10 steps and a sharded checkpoint, then an
#             autoresumed run to step 20 (losses and sample order against the 1-GPU run's first 20 steps).
# OF-9B runs on one GPU: see docs/PERFORMANCE.md ("How to reproduce").
# JSON results and logs go to $OUT. Run from the repository root with the project importable.
set -u
OUT=${OUT:-/tmp/flamingo-bench-out}
W=${W:-/tmp/flamingo-bench}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
B="bench/throughput.py yamls/flamingo-3b.yaml --work-dir $W"
LAUNCH="python3 -m composer.cli.launcher -n 2"
FAST="--shape of3b model.frozen_dtype=bf16 model.compile_blocks=true activation_checkpointing=false \
  device_train_microbatch_size=64 train_data.num_workers=8"
GC="callbacks.scheduled_gc.interval=100"
STATIC="train_data.sources.laion.pad_to_max_tokens=true"

# Corpus (enough for the 2-GPU runs) and random-init assets, shared by every run.
python3 -c "
from bench.synthetic import write_corpus
from bench.throughput import shape_assets
write_corpus('$W/corpus', n_pairs=2 * 29 * 64, n_docs=2 * 29 * 32)
shape_assets('$W', 'of3b')
" || exit 1

run() {  # run <name> <timeout s> <command...>: log to $OUT/<name>.log, print its summary line
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "[$name] exit $? after ${SECONDS}s: $(grep -h '^{"gpu"' "$OUT/$name.log" | tail -n 1)"
}

lane01() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu 260 python3 $B $FAST $GC $STATIC --json "$OUT/of3b-1gpu.json" &
  CUDA_VISIBLE_DEVICES=1 run of3b-1gpu-nolevers 260 python3 $B $FAST --json "$OUT/of3b-1gpu-nolevers.json" &
  wait
  CUDA_VISIBLE_DEVICES=0,1 run of3b-2gpu-fsdp 260 $LAUNCH --master_port 29510 $B $FAST $GC $STATIC \
    parallelism_config.fsdp.sharding_strategy=FULL_SHARD --json "$OUT/of3b-2gpu-fsdp.json"
  CUDA_VISIBLE_DEVICES=0,1 run of3b-2gpu-unfreeze 150 $LAUNCH --master_port 29511 $B --shape of3b \
    --warmup 2 --steps 3 model.frozen_dtype=bf16 activation_checkpointing=false device_train_microbatch_size=64 \
    parallelism_config.fsdp.sharding_strategy=FULL_SHARD model.trainable.lm_last_n_layers=2 scheduler.t_warmup=0ba --check-params \
    --json "$OUT/of3b-2gpu-unfreeze.json"
}

lane23() {
  CUDA_VISIBLE_DEVICES=2 run of3b-1gpu-gc 260 python3 $B $FAST $GC --json "$OUT/of3b-1gpu-gc.json" &
  CUDA_VISIBLE_DEVICES=3 run of3b-1gpu-static 260 python3 $B $FAST $STATIC --json "$OUT/of3b-1gpu-static.json" &
  wait
  # Same global batch as the 1-GPU runs (64 + 32), eager, 10 steps then resumed to 20.
  local resume="--shape of3b --warmup 0 model.frozen_dtype=bf16 activation_checkpointing=false $GC $STATIC \
    train_data.sources.laion.batch_size=32 train_data.sources.mmc4.batch_size=16 device_train_microbatch_size=32 \
    train_data.num_workers=4 parallelism_config.fsdp.sharding_strategy=FULL_SHARD run_name=resume-check \
    save_folder=$W/ckpt save_interval=10ba autoresume=true"
  rm -rf "$W/ckpt"
  CUDA_VISIBLE_DEVICES=2,3 run of3b-2gpu-resume-a 150 $LAUNCH --master_port 29520 $B $resume --steps 9 \
    --json "$OUT/of3b-2gpu-resume-a.json"
  ls -l "$W/ckpt" > "$OUT/resume-ckpt-listing.txt" 2>&1
  CUDA_VISIBLE_DEVICES=2,3 run of3b-2gpu-resume-b 150 $LAUNCH --master_port 29521 $B $resume --steps 19 \
    --json "$OUT/of3b-2gpu-resume-b.json"
}

lane01 & lane23 & wait
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpus.txt"
ls "$OUT"
