#!/usr/bin/env bash
# What a lent GPU machine runs, in calls of at most ten minutes (docs/benchmarks.md), by $STAGES:
#   always: the kernels' and models' tests, compiled on CUDA (in the background, beside training),
#   stash:  only keep the data parts this call carried ($PARTS_IN) in $STASH: a corpus larger than
#           one call may carry travels in parts over several calls to the same warm machine,
#   train:  $CONFIG's training run, sized to TRAIN_SECONDS by a 40-step pilot (unless
#           PILOT_STEPS=0), and its weights (no optimizer state: it would not fit the way back)
#           as split archives,
#   bench:  the kernel benchmark on the then idle GPU,
#   engine: the CUDA-graph and determinism benchmarks,
#   serve:  the long-file workloads end to end on the GPU: our server over HTTP and our engine in
#           process against `transformers` generate() on the same GPU
#           (`benchmarks.bench_engine --long-files-only --device cuda`, ≈5 minutes; its JSON rows
#           and its table come back in $OUT).
# Inputs: the packed data in $DATA_IN (val.bin, meta.json, tokenizer files, and train.bin.xz or,
# when it came in parts, train.bin.xz.NN in $PARTS_IN and $STASH), Python wheels the image lacks
# in $WHEELS (benchmarks/gpu_wheels.sh makes them). Everything it reports lands in $OUT.
#
# Serving alone, carrying .whl:   STAGES=serve TESTS=0 benchmarks/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu-session}
DATA_IN=${DATA_IN:-.gpu}
PARTS_IN=${PARTS_IN:-}
STASH=${STASH:-/tmp/stash}  # outside the working tree: kept while the machine stays warm
WHEELS=${WHEELS:-.whl}
STAGES=${STAGES:-"train bench engine"}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
CALL_SECONDS=${CALL_SECONDS:-600}  # the device call's timeout_s
BENCH_SECONDS=${BENCH_SECONDS:-100}
SERVE_SECONDS=${SERVE_SECONDS:-480}
BENCH_ARGS=${BENCH_ARGS-"--quick"}  # empty: the full shape grid
CONFIG=${CONFIG:-training/configs/default.yaml}
RUN=${RUN:-runs/default-model}  # the config's train.out_dir
PILOT_STEPS=${PILOT_STEPS:-40}  # 0: train the config's steps as they are
TESTS=${TESTS:-1}
DATA=${DATA:-data/default-model}  # the config's data out_dir
mkdir -p "$OUT" "$RUN" "$DATA" "$STASH" /tmp/logs
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS
stamp() { echo "[$((SECONDS - start)) s] $*"; }

if [ -n "$PARTS_IN" ]; then
    cp "$PARTS_IN"/train.bin.xz.* "$STASH"/
    stamp "stashed: $(ls "$STASH" | tr '\n' ' ')"
fi
[ "$STAGES" = stash ] && exit 0

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl
# The project itself: its kernels import as `completion_kernels` from kernels/ (setup.py).
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

run_tests() {  # the kernels' and models' tests that exist, compiled on CUDA
    local files=()
    for f in tests/kernels/test_kernels_attention.py tests/kernels/test_kernels_beam.py \
        tests/engine/test_cuda_graphs.py tests/engine/test_models.py; do
        [ -f "$f" ] && files+=("$f")
    done
    # (the one test left out compares with `transformers` on the CPU in a way its versions differ)
    timeout 240 python3 -m pytest -q -p no:cacheprovider "${files[@]}" -k "not scattered_blocks" \
        > /tmp/logs/tests.log 2>&1
    echo "exit $?" >> /tmp/logs/tests.log
}

size_run() {  # steps that fill TRAIN_SECONDS at the pilot's speed: 70% random FIM, 30% structured
    python3 - "$RUN/metrics.jsonl" "$TRAIN_SECONDS" "$CONFIG" <<'PY'
import json, statistics, sys, yaml
metrics, seconds, config = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = [json.loads(line) for line in open(metrics) if '"tok_per_s"' in line][10:]
step_s = statistics.median(r["tokens"] / r["step"] / r["tok_per_s"] for r in rows)
steps = int(seconds * 0.9 / step_s)
cfg = yaml.safe_load(open(config))
cfg["curriculum"]["random_fim"]["steps"] = int(steps * 0.7)
cfg["curriculum"]["structured_fim"]["steps"] = steps - int(steps * 0.7)
yaml.safe_dump(cfg, open(config, "w"), sort_keys=False)
print(steps)
PY
}

pack_weights() {  # model weights and metrics; the optimizer state would not fit the way back
    # Weights as float16, as the export writes them anyway: a 24.6M model's float32 weights alone
    # would pass the 64 MiB that one call can bring back.
    python3 - "$RUN" <<'PY'
import sys, torch
ckpt = torch.load(f"{sys.argv[1]}/ckpt.pt", map_location="cpu", weights_only=False)
for key in ("optimizer", "scheduler", "torch_rng"):
    ckpt.pop(key)
ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
torch.save(ckpt, f"{sys.argv[1]}/weights.pt")
PY
    tar czf - -C "$RUN" weights.pt metrics.jsonl learning_curve.png | split -b 15M - "$OUT/run.tgz."
    cp $CONFIG "$OUT/default.yaml"
}

[ "$TESTS" = 1 ] && run_tests &
tests=$!
if [[ $STAGES == *train* ]]; then
    cp "$DATA_IN"/{val.bin,meta.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json} "$DATA"/
    if [ -f "$DATA_IN/train.bin.xz" ]; then
        xz -d -T0 -c "$DATA_IN/train.bin.xz" > "$DATA/train.bin"
    else
        cat "$STASH"/train.bin.xz.* | xz -d -T0 > "$DATA/train.bin"
    fi
    stamp "data ready: $(du -h "$DATA/train.bin" | cut -f1); pilot of $PILOT_STEPS steps"
    if [ "$PILOT_STEPS" -gt 0 ]; then
        # The pilot stays inside warmup, so its steps are the run's own first steps: the run resumes.
        python3 -m training train --config $CONFIG --until-step $PILOT_STEPS --set train.log_every=1 \
            > /tmp/logs/train.log 2>&1
        stamp "training $(size_run) steps"
    fi
    # Stopped, if it overruns, in time to pack its last checkpoint before the call's limit.
    timeout $((CALL_SECONDS - 45 - (SECONDS - start))) python3 -m training train --config $CONFIG \
        >> /tmp/logs/train.log 2>&1
    stamp "training done: $(tail -c 300 /tmp/logs/train.log | tr '\r' '\n' | tail -1)"
fi
wait $tests
[ "$TESTS" = 1 ] && stamp "tests: $(tail -2 /tmp/logs/tests.log | tr '\n' ' ')"
if [[ $STAGES == *bench* ]]; then
    timeout "$BENCH_SECONDS" python3 benchmarks/bench_kernels.py $BENCH_ARGS > /tmp/logs/bench_kernels.md 2>&1
    stamp "kernel benchmark done"
fi
if [[ $STAGES == *engine* ]]; then
    timeout 45 python3 benchmarks/bench_cuda_graphs.py > /tmp/logs/bench_cuda_graphs.md 2>&1
    timeout 90 python3 -m benchmarks.determinism --families gpt2 --trials 2 > /tmp/logs/determinism.md 2>&1
    stamp "engine benchmarks done"
fi
if [[ $STAGES == *serve* ]]; then
    timeout "$SERVE_SECONDS" python3 -m benchmarks.bench_engine --long-files-only --device cuda \
        --sticky-only --no-doc > /tmp/logs/bench_long_files.md 2>&1
    cp /tmp/logs/bench_long_files.md build/bench_long_files_*.json "$OUT"/ 2>/dev/null
    stamp "long files on the GPU done: $(tail -c 300 /tmp/logs/bench_long_files.md)"
fi
[[ $STAGES == *train* ]] && pack_weights
tar czf "$OUT/logs.tgz" -C /tmp logs
stamp "packed: $(ls "$OUT" | tr '\n' ' ')"
