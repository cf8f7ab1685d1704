"""Typed, versioned contracts: the manifest a producer writes and the records a consumer writes.

Everything the harness reads back from disk passes through these models first, so a manifest or
a results file that someone edited, truncated or crafted is refused with one line naming the
file, the line (for JSON lines) and the field, before any of it is used:

- :class:`Manifest` (``schema`` 1): the environment (:class:`Env`), one :data:`CaseSection` per
  case and one :data:`Entry` per (case, format): an :class:`ArtifactEntry` when the file was
  written, a :class:`SkippedEntry` when it was skipped or failed;
- result records: :class:`harness.records.Record` (a pydantic dataclass) whose producer and
  consumer are :class:`EnvBrief`.

The JSON schemas generated from these models are committed under ``harness/data/schema/``;
``python -m harness.contracts`` rewrites them, and ``tests/test_contracts.py`` fails when they
drift. Unknown extra fields are kept (a newer harness may add some); a changed meaning of an
existing field needs a new ``schema`` number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import NotRequired, TypedDict

from harness.errors import HarnessError

#: the manifest layout this harness writes and reads
MANIFEST_SCHEMA = 1
#: the folder of the committed JSON schemas
SCHEMA_DIR = Path(__file__).parent / "data" / "schema"
#: a folder-safe name (env ids and case names become folder names)
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$"


class _Model(BaseModel):
    """Extra fields are kept (forward compatible); every declared field is type-checked."""

    model_config = ConfigDict(extra="allow")


class TensorDescription(_Model):
    """One tensor (or ndarray): what ``harness.fingerprint.describe_tensor`` records."""

    dtype: str
    shape: list[NonNegativeInt]
    stride: list[int]
    requires_grad: bool
    hash: str
    nbytes: NonNegativeInt
    device: Optional[str] = None
    #: the first tensor (in walk order) sharing this one's storage
    share_group: Optional[str] = None


class Fingerprint(_Model):
    """What a payload holds: its tensors, its non-tensor leaves and the bytes its views need."""

    tensors: dict[str, TensorDescription]
    scalars: dict[str, Any] = Field(default_factory=dict)
    view_bytes_bound: NonNegativeInt = 0


class Env(_Model):
    """The environment a manifest was produced in (``harness.env.describe``)."""

    torch: str
    python: str
    device: str
    torchvision: Optional[str] = None
    numpy: Optional[str] = None
    platform: Optional[str] = None
    machine: Optional[str] = None
    cuda: Optional[str] = None
    byteorder: Optional[str] = None
    default_weights_only: Optional[bool] = None


class EnvBrief(TypedDict):
    """The fields a result record keeps of an environment (``harness.env.brief``)."""

    torch: str
    python: str
    device: str
    default_weights_only: NotRequired[Optional[bool]]


class ArtifactEntry(_Model):
    """A written artifact: where it is, its size and hash, and the fingerprints it is judged by."""

    status: Literal["ok"]
    case: str
    format: str
    #: relative to the manifest's folder
    file: str = Field(min_length=1)
    file_bytes: NonNegativeInt
    file_hash: str = Field(min_length=1)
    stored_tensor_bytes: NonNegativeInt
    fingerprint: Fingerprint
    save_seconds: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    modes: Optional[dict[str, bool]] = None
    save_warnings: list[str] = Field(default_factory=list)
    #: a saved program's own forward outputs (TorchScript, torch.export)
    outputs: Optional[dict[str, TensorDescription]] = None
    #: formats that hold optimizer state: its fingerprint per optimizer, and the state one step later
    optimizer: Optional[dict[str, Any]] = None
    next_step: Optional[dict[str, TensorDescription]] = None


class SkippedEntry(_Model):
    """A (case, format) that has no artifact: skipped (with the reason) or failed to save."""

    status: Literal["skip", "error"]
    case: str
    format: str
    detail: str = ""


Entry = Annotated[Union[ArtifactEntry, SkippedEntry], Field(discriminator="status")]


class BuiltCase(_Model):
    """A case that was built: its fixed inputs' outputs, tolerances and where the output tensors are."""

    exercises: str
    steps: NonNegativeInt
    atol: float
    resume_atol: float
    outputs_file: str = Field(min_length=1)
    outputs: dict[str, TensorDescription]


class SkippedCase(_Model):
    """A case whose requirement is missing here (e.g. torchvision)."""

    exercises: str
    skip: str


class FailedCase(_Model):
    """A case that could not be built."""

    exercises: str
    error: str


def _case_kind(value: Any) -> str:
    """The tag of a case section: from a dict's keys when reading, from the model's class when dumping."""
    if isinstance(value, dict):
        return "skipped" if "skip" in value else "failed" if "error" in value else "built"
    return "skipped" if isinstance(value, SkippedCase) else "failed" if isinstance(value, FailedCase) else "built"


CaseSection = Annotated[Union[Annotated[BuiltCase, Tag("built")], Annotated[SkippedCase, Tag("skipped")],
                              Annotated[FailedCase, Tag("failed")]], Discriminator(_case_kind)]


class Manifest(_Model):
    """One producing environment's ``manifest.json``."""

    schema_: Literal[1] = Field(alias="schema")
    env: Env
    env_id: str = Field(pattern=SAFE_NAME)
    created: Optional[str] = None
    cases: dict[str, CaseSection]
    entries: list[Entry]

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="after")
    def _entries_name_their_cases(self) -> Manifest:
        for number, entry in enumerate(self.entries):
            if isinstance(entry, ArtifactEntry) and not isinstance(self.cases.get(entry.case), BuiltCase):
                raise ValueError(f"entries.{number}.case: {entry.case!r} has an artifact but no built case section")
        return self


MANIFEST_ADAPTER = TypeAdapter(Manifest)


def describe_error(exc: ValidationError) -> str:
    """The first problem of a validation error as ``field a.b.0: message`` (plus how many more)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == "value_error":  # our own validators name the field in the message
        message = message.removeprefix("Value error, ")
        text = message if not where else f"field {where}: {message}"
    else:
        text = f"field {where}: {message}" if where else message
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return text + more


def parse_manifest(raw: bytes, source: Path) -> Manifest:
    """A validated manifest from JSON bytes; any problem is a one-line HarnessError naming ``source``."""
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise HarnessError(f"{source}: manifest does not parse ({describe_error(exc)}); re-run produce for that "
                               "environment") from None
        raise HarnessError(f"{source}: not a checkpoint-harness manifest of schema {MANIFEST_SCHEMA}: "
                           f"{describe_error(exc)}; re-run produce for that environment") from None


def schemas() -> dict[str, dict[str, Any]]:
    """The published JSON schemas, by file name."""
    from harness.records import RECORD_ADAPTER

    return {"manifest.schema.json": _with_id(Manifest.model_json_schema(by_alias=True), "manifest"),
            "record.schema.json": _with_id(RECORD_ADAPTER.json_schema(), "record")}


def _with_id(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"checkpoint-harness/{name}.schema.json", **schema}


def render_schema(schema: dict[str, Any]) -> str:
    """The committed text of one schema (stable key order, trailing newline)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Rewrite the committed schemas from the models."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        (folder / name).write_text(render_schema(schema), encoding="utf-8")
        written.append(folder / name)
    return written


if __name__ == "__main__":  # pragma: no cover - `python -m harness.contracts`
    for path in write_schemas():
        print(f"wrote {path}")
