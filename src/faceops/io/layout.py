"""Fixed file names inside stage outputs, shared by the stage that writes and every reader.

Paths of the outputs themselves are written once, in dvc.yaml (stage ``cmd`` arguments); only the names
*inside* an output directory live here.
"""

MANIFEST = "manifest.jsonl"
QUARANTINE = "quarantine.jsonl"
FACES_DIR = "faces"
LABELS_CSV = "labels.csv"
COCO_ANNOTATIONS = "annotations.json"
SHARD_INDEX = "index.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
#: Exported model inside a training stage's output directory (``faceops.io.checkpoint``, kind "model").
MODEL_FILE = "model.pt"
#: Latest resumable checkpoint inside a run's resume folder.
RESUME_FILE = "last.pt"
