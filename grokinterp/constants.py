"""Names of the files in a run directory, the format tags written into them, and the grokking threshold.

One place for every name, as SAELens keeps its ``constants.py``: the run directory's owner
(``grokinterp.io.rundir``) and everything that reads a run refer to these, never to string literals.
"""

from __future__ import annotations

CONFIG_FILE = "config.json"  # {"config": RunConfig, "versions": {...}, "created": ..., "changes": [...]}
SPLIT_FILE = "split.safetensors"  # train_indices, test_indices (int64)
METRICS_FILE = "metrics.jsonl"  # one strict-JSON row per evaluation
SUMMARY_FILE = "summary.json"  # written when training stops (RunSummary)
STATE_FILE = "state.safetensors"  # the latest resume point: weights, optimizer, RNG, filter state
CHECKPOINT_DIR = "checkpoints"  # epoch_000100.safetensors, ...
CHECKPOINT_PATTERN = r"^epoch_(\d+)\.safetensors$"
LOCK_FILE = ".lock"  # held (flock) by the one process writing the run
MEASURES_FILE = "measures.csv"  # written by `grokinterp analyze`
ANALYSIS_FILE = "analysis.json"  # written by `grokinterp analyze`
LLC_DIR = "llc"  # `grokinterp analyze --llc`: epoch_000100.json (estimate + chain traces) and config.json
LLC_CONFIG_FILE = "config.json"  # the LLCConfig of the estimates in LLC_DIR
LLC_PATTERN = r"^epoch_(\d+)\.json$"
STUDY_FILE = "study.json"  # written by `grokinterp analyze ENS` into an ensemble folder (train --seeds)
#: Atomic writes (``grokinterp.io.files.atomic_write``) go through ``.<name>.<random>.grokinterp-tmp``
#: beside their target, ``<random>`` being ``tempfile.mkstemp``'s letters, digits and underscores. A
#: kill can leave one behind; the run's owner removes exactly the names that match ``TMP_PATTERN``.
#: The suffix names grokinterp so that a user's ``.notes.tmp`` can never match: a plain ``.tmp``
#: (grokinterp's names before) is not removed, since nothing tells it from a user's file.
TMP_SUFFIX = ".grokinterp-tmp"
TMP_PATTERN = r"^\..+\.[A-Za-z0-9_]+" + TMP_SUFFIX.replace(".", r"\.") + "$"

#: Files directly in a run directory that grokinterp writes (``--force`` removes only these,
#: the checkpoint folder's ``epoch_*.safetensors`` and stale temporary files).
RUN_FILES = (
    CONFIG_FILE, SPLIT_FILE, METRICS_FILE, SUMMARY_FILE, STATE_FILE, LOCK_FILE, MEASURES_FILE, ANALYSIS_FILE,
)  # fmt: skip

#: Config fields ``--resume`` may change (recorded in config.json); any other change is refused,
#: since it would make the run a different experiment. ``epochs`` may only grow. The run's config
#: hash (``grokinterp.io.identity``) leaves them out.
RESUMABLE_FIELDS = (
    "epochs", "stop_acc", "stop_patience", "eval_every", "checkpoint_every",
    "checkpoint_early_every", "checkpoint_early_until", "device", "compile",
)  # fmt: skip

CHECKPOINT_FORMAT = "grokinterp-checkpoint/1"
STATE_FORMAT = "grokinterp-state/1"
SPLIT_FORMAT = "grokinterp-split/1"

#: Test accuracy at which a run counts as grokked (generalised): the one definition, used by the
#: trainer's grokking epoch, imported runs, the phases, the clock/pizza verdict, sweeps and tuning.
GROKKING_THRESHOLD = 0.99
