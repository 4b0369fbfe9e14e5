"""One store root for everything on disk: every path under it, and the names of episode directories, are made here."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

from assets_store.errors import StoreError
from assets_store.names import validate_name

STORE_ENV = "ALOHA_STORE"
DEFAULT_STORE_DIRNAME = ".aloha_store"
# With an object-store root: where the pipeline's own files (reports, datasets, runs, deployments, the embedded
# Dagster and MLflow state) live on the machine that runs it; default ./.aloha_state/<URL, readable>-<hash>.
LOCAL_STORE_ENV = "ALOHA_LOCAL_STORE"
DEFAULT_STATE_DIRNAME = ".aloha_state"

EPISODE_SUFFIX = ".zarr"
_EPISODE_DIRNAME = re.compile(r"^episode_(\d{6})\.zarr$")
# What a user may type for an episode of the store: SESSION/3, SESSION/episode_3, SESSION/episode_000003.zarr.
_EPISODE_REF = re.compile(r"([^/]+)/(?:episode_)?(\d+)(?:\.zarr)?/?")

# A session is immutable once this file exists; the recorder writes it last, the pipeline's sensor waits for it.
FINALIZED_MARKER = "SESSION_FINALIZED.json"
# An episode under construction lives in a hidden sibling `.tmp-<final>.<host>.<pid>.<token>` (see temp_dirname).
TMP_PREFIX = ".tmp-"
# Written inside the temporary directory once every array is on disk: recovery may then rename it into place.
COMPLETE_MARKER = ".aloha_complete"
# The promoted policy: the deploy directory's name and the MLflow registry alias.
CHAMPION = "champion"
DEFAULT_MODEL_NAME = "aloha-act"  # the registered model (and deploy folder) when none is named


_URL_ROOT = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://(.*)$")
LOCAL_SCHEMES = ("file", "local")


def url_scheme(root: str | os.PathLike | None) -> str | None:
    """The scheme of a store root given as a URL (`s3`, `file`, ...), None for a plain path."""
    m = _URL_ROOT.match(root) if isinstance(root, str) else None
    return m.group(1).lower() if m else None


def is_remote_root(root: str | os.PathLike | None) -> bool:
    """A URL other than `file://`: an object store (or fsspec's in-memory filesystem), read through fsspec."""
    return url_scheme(root) not in (None, *LOCAL_SCHEMES)


def store_root_url(explicit: str | os.PathLike | None = None) -> str | None:
    """The object-store URL the store root names (`--store`, then $ALOHA_STORE), or None for a local store."""
    root = explicit if explicit else os.environ.get(STORE_ENV)
    root = str(root) if root else None
    return root if is_remote_root(root) else None


def local_path_of(location: str | os.PathLike) -> Path:
    """A local path, or the path of a `file://` URL (not resolved)."""
    text = str(location)
    return Path(_URL_ROOT.match(text).group(2) if url_scheme(text) in LOCAL_SCHEMES else text)


def local_state_root(url: str, explicit: str | os.PathLike | None = None) -> Path:
    """The local directory that keeps the pipeline's own files for the object-store root `url`: `explicit`, then
    $ALOHA_LOCAL_STORE, else ./.aloha_state/<URL made a file name>-<hash of the URL>. One per URL by default, so two
    buckets (or a bucket and the local ./.aloha_store) never share reports, annotations, runs or Dagster history."""
    chosen = explicit or os.environ.get(LOCAL_STORE_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    url = url.rstrip("/")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url)[:48].strip("_")
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return (Path.cwd() / DEFAULT_STATE_DIRNAME / f"{readable}-{digest}").resolve()


def resolve_store_root(explicit: str | os.PathLike | None = None) -> Path:
    """`--store` wins, then $ALOHA_STORE, then ./.aloha_store; always absolute so subprocesses agree.

    A `file://` URL is its local path. Any other URL is an object store (`assets_store.remote`): refused here with
    a clear error instead of becoming a local folder named `s3:`."""
    if explicit:
        root = str(explicit)
    elif os.environ.get(STORE_ENV):
        root = os.environ[STORE_ENV]
    else:
        root = str(Path.cwd() / DEFAULT_STORE_DIRNAME)
    scheme = url_scheme(root)
    if scheme in LOCAL_SCHEMES:
        root = str(local_path_of(root))
    elif scheme:
        raise StoreError(
            f"store root {root}: an object-store URL; this command works on a local store (record locally, then "
            "`aloha sync SESSION --to URL`; `aloha pull --store URL` reads a bundle from it)"
        )
    return Path(root).expanduser().resolve()


# ---------------------------------------------------------------------------------------------- episode names
def episode_dirname(index: int) -> str:
    """The committed directory name of episode `index` in its session: episode_000003.zarr."""
    if int(index) < 0:
        raise ValueError(f"episode index must be >= 0, got {index}")
    return f"episode_{int(index):06d}{EPISODE_SUFFIX}"


def parse_episode_dirname(name: str, *, in_progress: bool = False) -> int | None:
    """The index in a committed episode directory name, else None; `in_progress` also reads a writer's temporary name."""
    m = _EPISODE_DIRNAME.match(name)
    if m:
        return int(m.group(1))
    if in_progress:
        temp = parse_temp_dirname(name)
        if temp is not None:
            return parse_episode_dirname(temp.final_name)
    return None


def episode_stem(name: str) -> str:
    """episode_000003.zarr -> episode_000003: the base name of files derived from an episode (MP4, PNG, HDF5)."""
    return name.removesuffix(EPISODE_SUFFIX)


def parse_episode_ref(ref: str) -> tuple[str, int] | None:
    """(session, index) of SESSION/3, SESSION/episode_3 or SESSION/episode_000003.zarr; None for anything else."""
    m = _EPISODE_REF.fullmatch(ref)
    return (m.group(1), int(m.group(2))) if m else None


# ---------------------------------------------------------------------------------------------- temporary names
@dataclass(frozen=True)
class TempName:
    final_name: str
    host: str
    pid: str


def host_tag() -> str:
    """This machine's name without dots (temporary names are split on dots: `rig.lab.local` must stay one field)."""
    return socket.gethostname().replace(".", "_")


def temp_dirname(final_name: str) -> str:
    """Hidden sibling name that records who owns it (host, pid) so a sweeper never touches a live writer's dir."""
    return f"{TMP_PREFIX}{final_name}.{host_tag()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def parse_temp_dirname(name: str) -> TempName | None:
    """The parts of a `temp_dirname`, or None when `name` is not one."""
    if not name.startswith(TMP_PREFIX):
        return None
    parts = name[len(TMP_PREFIX):].rsplit(".", 3)
    if len(parts) != 4:
        return None
    final_name, host, pid, _ = parts
    return TempName(final_name, host, pid)


# ---------------------------------------------------------------------------------------------- the layout
def _session(session: str) -> str:
    return validate_name(session, "session name")


@dataclass(frozen=True)
class StoreLayout:
    """Every path of a store. `root` is a local directory. With `data_url` (an object-store root, see
    `assets_store.remote`) the recordings (`raw/`) are read from there, as `UPath`s, and everything else (the
    pipeline's reports, datasets, runs, deployments, Dagster and MLflow) stays under `root`: only the data moves."""

    root: Path
    data_url: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        if self.data_url is not None:
            if not is_remote_root(self.data_url):
                raise StoreError(f"data_url {self.data_url}: expected an object-store URL (s3://..., memory://...)")
            object.__setattr__(self, "data_url", self.data_url.rstrip("/"))

    @classmethod
    def at(cls, explicit: str | os.PathLike | None = None) -> "StoreLayout":
        return cls(resolve_store_root(explicit))

    @classmethod
    def of_root(cls, root: str | os.PathLike | None = None, local_root: str | os.PathLike | None = None
                ) -> "StoreLayout":
        """The layout of any store root (`--store`, then $ALOHA_STORE, then ./.aloha_store), for the pipeline and
        `aloha ui`: a local root as `at`; an object-store URL holds the recordings (`data_url`) and everything else
        lives under `local_state_root(url, local_root)`."""
        url = store_root_url(root)
        if url is None:
            return cls.at(root)
        return cls(local_state_root(url, local_root), data_url=url)

    @classmethod
    def of_dataset(cls, dataset_dir: str | os.PathLike) -> "StoreLayout":
        """The store a dataset directory (<store>/datasets/<id>) belongs to."""
        return cls(Path(dataset_dir).resolve().parent.parent)

    # -------------------------------------------------------------------------- recordings
    @property
    def raw_dir(self) -> Path:
        """Recordings; a `UPath` in the object store when the layout has a `data_url`. Its filesystem caches no
        listings: robots sync sessions from other processes, and every reader of raw/ (the sensors in the
        long-running daemon, the assets in a code server, a CLI verb) must see them, not the first listing it made."""
        if self.data_url:
            return UPath(self.data_url, use_listings_cache=False) / "raw"
        return self.root / "raw"

    def session_dir(self, session: str) -> Path:
        return self.raw_dir / _session(session)

    def episode_path(self, session: str, index: int) -> Path:
        return self.session_dir(session) / episode_dirname(index)

    def find_episode(self, ref: str) -> Path | None:
        """The committed episode a SESSION/N-style reference names (see `parse_episode_ref`), or None."""
        parsed = parse_episode_ref(ref)
        if parsed is None:
            return None
        path = self.episode_path(*parsed)
        return path if path.is_dir() else None

    def annotations_path(self, session: str) -> Path:
        """The session's append-only annotation log (labels, exclusions): beside the session directory, never in
        it (a finalized session is immutable). With a `data_url` it is read from the bucket, where `aloha sync`
        uploads it with the session (it is written on the machine that recorded, through a local layout)."""
        return self.raw_dir / f"{_session(session)}.annotations.jsonl"

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def emulated_calibration_dir(self) -> Path:
        """Calibrations of the emulated ALOHA's arms (kept apart from the real rig's)."""
        return self.calibration_dir / "emulated"

    def views_dir(self, session_dirname: str) -> Path:
        """`aloha view` output for episodes of one session (named by the episode's parent directory)."""
        return self.root / "views" / session_dirname

    # -------------------------------------------------------------------------- pipeline
    @property
    def pipeline_dir(self) -> Path:
        """Per-episode validation reports and per-session summaries (the pipeline's own cache)."""
        return self.root / "pipeline"

    def episode_report_path(self, session: str, episode: str) -> Path:
        return self.pipeline_dir / "episodes" / _session(session) / f"{episode}.json"

    def session_summary_path(self, session: str) -> Path:
        """The session's validated episodes with their partial statistics."""
        return self.pipeline_dir / "sessions" / f"{_session(session)}.json"

    def session_inventory_path(self, session: str) -> Path:
        """Which episodes `raw_episodes` checked, with which settings."""
        return self.pipeline_dir / "sessions" / f"{_session(session)}.raw.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def quarantine_session_dir(self, session: str) -> Path:
        return self.quarantine_dir / _session(session)

    def quarantine_record_path(self, session: str, episode: str) -> Path:
        return self.quarantine_session_dir(session) / f"{episode}.json"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.datasets_dir / validate_name(dataset_id, "dataset id")

    @property
    def runs_dir(self) -> Path:
        """Training outputs (checkpoints, logs) per run."""
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / validate_name(run_id, "run id")

    def run_bundle_dir(self, run_id: str) -> Path:
        """The policy bundle a training run exports (copied under deploy/ only when promoted)."""
        return self.run_dir(run_id) / "bundle"

    @property
    def deploy_dir(self) -> Path:
        return self.root / "deploy"

    def deploy_model_dir(self, model_name: str) -> Path:
        return self.deploy_dir / validate_name(model_name, "model name")

    def deploy_path(self, model_name: str, version: str | int) -> Path:
        """<store>/deploy/<model>/champion or <store>/deploy/<model>/v<N>."""
        leaf = CHAMPION if version == CHAMPION else f"v{int(version)}"
        return self.deploy_model_dir(model_name) / leaf

    def promotion_record_path(self, model_name: str, version: str | int) -> Path:
        """Beside a deployed bundle (never inside it: its manifest lists every file): the scores and the rule that
        promoted it, so a pulled policy says what it was promoted on."""
        bundle = self.deploy_path(model_name, version)
        return bundle.with_name(f"{bundle.name}.promotion.json")

    # -------------------------------------------------------------------------- embedded services
    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()
