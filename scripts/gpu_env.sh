# Sourced by the GPU scripts: install the wheels in .whl/ (packages the GPU image lacks:
# soundfile, soxr, pydantic... see the esc50-minilm model card), put src/ on PYTHONPATH, and
# define RECIPE: the default model's config on the packed data in .device-data/.
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
ACCEL=${ACCELERATOR:-gpu}
RECIPE=(
  configs/default-esc50.yaml
  "data.train=[{manifest: .device-data/esc50/manifest.jsonl, splits: [fold1, fold2, fold3]}]"
  "data.validation=null"
  "model.text_encoder={kind: precomputed, path: .device-data/minilm-esc50.safetensors}"
  "trainer.accelerator=$ACCEL" "trainer.precision=${PRECISION:-bf16-mixed}"
  "data.segment_seconds=4.0" "data.num_workers=${WORKERS:-8}"
)
