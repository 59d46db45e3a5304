#!/usr/bin/env bash
# The GPU figures of docs/PERFORMANCE.md on one host with 2 GPUs, in stages (run all, or name some):
#   ab        one GPU (GPU 0), one after the other: compiled OF-3B with the code in $BASE (an earlier commit,
#             e.g. `git archive <commit> | tar -x -C base`), then with this tree, profiled (a same-run A/B);
#             $AB_ARGS: more overrides for both
#   cudagraphs  one GPU (GPU 0), one after the other: compiled OF-3B without, then with `model.cuda_graphs`
#             (profiled)
#   levers    OF-3B on one GPU: every speed setting (GPU 0); side by side on GPU 1, the same eager (no
#             compiled blocks); both with a kernel profile and a Chrome trace of 2 more steps
#   sdpa      compiled OF-3B on one GPU with cuDNN attention allowed (GPU 0) / not (GPU 1, the default),
#             both with a kernel profile and a Chrome trace of 2 more steps
#   nolevers  without the two step-time levers (scheduled GC, fixed LAION length): eager (GPU 1), and
#             compiled (GPU 0) without / with only the scheduled GC
#   fsdp_eager / fsdp   OF-3B on both GPUs, FSDP FULL_SHARD, eager / compiled, at the 1-GPU per-GPU batch
#   fsdp_tuning         eager FSDP with forward prefetch and no all-gather limit; SHARD_GRAD_OP
#   fsdp_fullmp  compiled FSDP FULL_SHARD with FSDP mixed precision FULL (fp32 parameters; autocast does
#             the bf16 compute, as on one GPU); the default (param_dtype bf16) failed to compile on torch 2.11
#   fsdp2     Composer's FSDP2 (FSDP_VERSION=2: fully_shard over the same units), eager then compiled
#   unfreeze  FSDP with the last 2 LM layers unfrozen: trainable table, FSDP units, what changed
#   resume    FSDP at the 1-GPU run's global batch: 10 steps and a sharded checkpoint, then an
#             autoresumed run to step 20 (losses and sample order against the 1-GPU run's)
#   of9b      OF-9B on one GPU (GPU 0)
#   guard     one GPU (GPU 0), one after the other: yamls/flamingo-3b.yaml as shipped (spike guard on), then the
#             same with callbacks.spike_guard=null (the guard's cost: a gradient norm and a host read per step)
#   shipped   one GPU (GPU 0), one after the other: yamls/flamingo-3b.yaml as shipped (its `auto` speed settings, no
#             overrides), then the hand-tuned settings (compiled blocks, CUDA graphs, bf16 frozen, fixed LAION
#             length, scheduled GC, 8 workers, no checkpointing)
#   shipped9b one GPU (GPU 0): yamls/flamingo-9b.yaml as shipped
#   ddp       yamls/flamingo-3b.yaml as shipped under DDP on both GPUs (auto: compiled blocks, no CUDA graphs), after
#             its 1-GPU baseline with the same settings (GPU 0, model.cuda_graphs=false)
#     bash bench/gpu_suite.sh fsdp_eager levers      # about 8 minutes
# JSON results (and profile tables) go to $W/results; results and logs are packed into one file,
# $OUT/results.tar.gz, after each stage. Run from the repository root with the project importable.
set -u
OUT=${OUT:-/tmp/flamingo-bench-out}
W=${W:-/tmp/flamingo-bench}
R=$W/results
mkdir -p "$OUT" "$W/logs" "$R"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
B="-m bench.throughput yamls/flamingo-3b.yaml --work-dir $W"
LAUNCH="python3 -m composer.cli.launcher -n 2"
EAGER="--shape of3b model.frozen_dtype=bf16 activation_checkpointing=false device_train_microbatch_size=64 \
  train_data.num_workers=8"
FAST="$EAGER model.compile_blocks=true"
GC="callbacks.scheduled_gc.interval=100"
STATIC="train_data.sources.laion.pad_to_max_tokens=true"

# Corpus (enough for the 2-GPU runs) and random-init assets, shared by every run.
python3 -c "
from bench.synthetic import write_corpus
from bench.throughput import shape_assets
write_corpus('$W/corpus', n_pairs=2 * 29 * 64, n_docs=2 * 29 * 32)
for s in ('of3b', 'of9b'):
    shape_assets('$W', s)
" || exit 1

run() {  # run <name> <timeout s> <command...>: log to $W/logs/<name>.log, print its summary line
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$W/logs/$name.log" 2>&1
  echo "[$name] exit $? after ${SECONDS}s: $(grep -h '^{"gpu"' "$W/logs/$name.log" | tail -n 1)"
}

levers() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu 330 python3 $B $FAST $GC $STATIC --profile 2 --trace --json "$R/of3b-1gpu.json" &
  CUDA_VISIBLE_DEVICES=1 run of3b-1gpu-eager 180 python3 $B $EAGER $GC $STATIC --profile 2 --trace \
    --json "$R/of3b-1gpu-eager.json" &
  wait
}

ab() {
  (cd "$BASE" && PYTHONPATH="$BASE:${PYTHONPATH:-}" CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-ab-base 330 \
    python3 $B $FAST $GC $STATIC ${AB_ARGS:-} --json "$R/of3b-1gpu-ab-base.json")
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-ab 330 python3 $B $FAST $GC $STATIC ${AB_ARGS:-} --profile 2 --trace \
    --json "$R/of3b-1gpu-ab.json"
}

cudagraphs() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-nographs 330 python3 $B $FAST $GC $STATIC --json "$R/of3b-1gpu-nographs.json"
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-graphs 330 python3 $B $FAST $GC $STATIC model.cuda_graphs=true \
    --profile 2 --trace --json "$R/of3b-1gpu-graphs.json"
}

sdpa() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-cudnn 300 python3 $B $FAST $GC $STATIC model.cudnn_attention=true \
    --profile 2 --trace --json "$R/of3b-1gpu-cudnn.json" &
  CUDA_VISIBLE_DEVICES=1 run of3b-1gpu-nocudnn 300 python3 $B $FAST $GC $STATIC --profile 2 --trace \
    --json "$R/of3b-1gpu-nocudnn.json" &
  wait
}

nolevers() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-nolevers 330 python3 $B $FAST --json "$R/of3b-1gpu-nolevers.json" &
  (CUDA_VISIBLE_DEVICES=1 run of3b-1gpu-eager-nolevers 150 python3 $B $EAGER --json "$R/of3b-1gpu-eager-nolevers.json"
   CUDA_VISIBLE_DEVICES=1 run of3b-1gpu-gc 330 python3 $B $FAST $GC --json "$R/of3b-1gpu-gc.json") &
  wait
}

fsdp_tuning() {  # eager FSDP: prefetching without the all-gather rate limit; SHARD_GRAD_OP
  run of3b-2gpu-fsdp-eager-prefetch 150 $LAUNCH $B $EAGER $GC $STATIC parallelism_config.fsdp.sharding_strategy=FULL_SHARD \
    parallelism_config.fsdp.limit_all_gathers=false parallelism_config.fsdp.forward_prefetch=true \
    --json "$R/of3b-2gpu-fsdp-eager-prefetch.json"
  run of3b-2gpu-fsdp-eager-sgo 150 $LAUNCH $B $EAGER $GC $STATIC parallelism_config.fsdp.sharding_strategy=SHARD_GRAD_OP \
    --json "$R/of3b-2gpu-fsdp-eager-sgo.json"
}

fsdp_eager() {
  run of3b-2gpu-fsdp-eager 240 $LAUNCH $B $EAGER $GC $STATIC parallelism_config.fsdp.sharding_strategy=FULL_SHARD \
    --profile 2 --json "$R/of3b-2gpu-fsdp-eager.json"
}

fsdp() {
  run of3b-2gpu-fsdp 330 $LAUNCH $B $FAST $GC $STATIC parallelism_config.fsdp.sharding_strategy=FULL_SHARD \
    --profile 2 --json "$R/of3b-2gpu-fsdp.json"
}

fsdp_fullmp() {
  run of3b-2gpu-fsdp-fullmp 330 $LAUNCH $B $FAST $GC $STATIC parallelism_config.fsdp.sharding_strategy=FULL_SHARD \
    parallelism_config.fsdp.mixed_precision=FULL --profile 2 --json "$R/of3b-2gpu-fsdp-fullmp.json"
}

fsdp2() {
  run of3b-2gpu-fsdp2-eager 240 env FSDP_VERSION=2 $LAUNCH $B $EAGER $GC $STATIC \
    parallelism_config.fsdp.sharding_strategy=FULL_SHARD --profile 2 --json "$R/of3b-2gpu-fsdp2-eager.json"
  run of3b-2gpu-fsdp2 330 env FSDP_VERSION=2 $LAUNCH $B $FAST $GC $STATIC \
    parallelism_config.fsdp.sharding_strategy=FULL_SHARD --profile 2 --json "$R/of3b-2gpu-fsdp2.json"
}

unfreeze() {
  run of3b-2gpu-unfreeze 150 $LAUNCH $B --shape of3b --warmup 2 --steps 3 --check-params model.frozen_dtype=bf16 \
    activation_checkpointing=false device_train_microbatch_size=64 parallelism_config.fsdp.sharding_strategy=FULL_SHARD \
    model.trainable.lm_last_n_layers=2 scheduler.t_warmup=0ba --json "$R/of3b-2gpu-unfreeze.json"
}

resume() {  # same global batch as the 1-GPU runs (64 + 32), eager, 10 steps then resumed to 20
  local args="--shape of3b --warmup 0 model.frozen_dtype=bf16 activation_checkpointing=false $GC $STATIC \
    train_data.sources.laion.batch_size=32 train_data.sources.mmc4.batch_size=16 device_train_microbatch_size=32 \
    train_data.num_workers=4 parallelism_config.fsdp.sharding_strategy=FULL_SHARD run_name=resume-check \
    save_folder=$W/ckpt save_interval=10ba autoresume=true"
  rm -rf "$W/ckpt"
  run of3b-2gpu-resume-a 150 $LAUNCH $B $args --steps 9 --json "$R/of3b-2gpu-resume-a.json"
  ls -lR "$W/ckpt" > "$W/logs/resume-ckpt-listing.txt" 2>&1
  run of3b-2gpu-resume-b 150 $LAUNCH $B $args --steps 19 --json "$R/of3b-2gpu-resume-b.json"
}

shipped() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-shipped 330 python3 $B --shape of3b --json "$R/of3b-1gpu-shipped.json"
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-tuned 330 python3 $B $FAST $GC $STATIC model.cuda_graphs=true \
    --json "$R/of3b-1gpu-tuned.json"
}

ddp() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-nographs-shipped 330 python3 $B --shape of3b model.cuda_graphs=false \
    --json "$R/of3b-1gpu-nographs-shipped.json"
  run of3b-2gpu-ddp-shipped 400 $LAUNCH $B --shape of3b --json "$R/of3b-2gpu-ddp-shipped.json"
}

guard() {
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-guard 330 python3 $B --shape of3b --json "$R/of3b-1gpu-guard.json"
  CUDA_VISIBLE_DEVICES=0 run of3b-1gpu-noguard 330 python3 $B --shape of3b callbacks.spike_guard=null \
    --json "$R/of3b-1gpu-noguard.json"
}

shipped9b() {
  CUDA_VISIBLE_DEVICES=0 run of9b-1gpu-shipped 400 python3 -m bench.throughput yamls/flamingo-9b.yaml --work-dir "$W" \
    --shape of9b --warmup 3 --steps 8 --json "$R/of9b-1gpu-shipped.json"
}

of9b() {
  CUDA_VISIBLE_DEVICES=0 run of9b-1gpu 320 python3 -m bench.throughput yamls/flamingo-9b.yaml --work-dir "$W" \
    --shape of9b --warmup 3 --steps 8 parallelism_config=null model.frozen_dtype=bf16 model.compile_blocks=true \
    activation_checkpointing=true device_train_microbatch_size=64 train_data.num_workers=8 $GC $STATIC \
    --json "$R/of9b-1gpu.json"
}

nvidia-smi --query-gpu=name,memory.total --format=csv > "$W/logs/gpus.txt"
for stage in ${*:-levers fsdp_eager fsdp_fullmp fsdp2 sdpa unfreeze resume fsdp_tuning nolevers of9b fsdp}; do
  "$stage"
  tar -czf "$OUT/results.tar.gz" -C "$W" logs results
done
ls "$OUT"
