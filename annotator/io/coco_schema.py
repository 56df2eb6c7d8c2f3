"""Pydantic v2 models of the COCO *instances* JSON format, and one-line error messages.

Only structure is checked here (types, required keys, non-negative sizes, finite numbers);
cross-references (ids, image sizes) are checked by :mod:`annotator.io.coco`. Unknown keys
(``info``, ``licenses``, ``coco_url``, ...) are allowed and ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, StrictInt, StrictStr, Tag, ValidationError,
    field_validator,
)

from annotator.errors import AnnotatorError

Number = Annotated[float, Field(strict=True)]  # int or float, never a string; finite (see config)
PositiveInt = Annotated[StrictInt, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class CocoRLE(_Model):
    """RLE segmentation: ``size`` = [height, width]; ``counts`` str (compressed) or int list."""

    size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
    counts: Any

    @field_validator("counts")
    @classmethod
    def _counts(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("empty compressed RLE counts")
            return value
        if isinstance(value, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise ValueError("uncompressed RLE counts must be non-negative integers")
            return value
        raise ValueError("counts must be a string (compressed RLE) or a list of integers")


def _segmentation_kind(value: Any) -> Optional[str]:
    if isinstance(value, dict) or isinstance(value, CocoRLE):
        return "rle"
    if isinstance(value, list):
        return "polygon"
    return None


Segmentation = Annotated[
    Union[Annotated[list[list[Number]], Tag("polygon")], Annotated[CocoRLE, Tag("rle")]],
    Discriminator(_segmentation_kind, custom_error_type="segmentation_type",
                  custom_error_message="expected a polygon list [[x1, y1, ...], ...] or an RLE dict "
                                       "{size, counts}"),
]


class CocoImage(_Model):
    id: StrictInt
    file_name: Annotated[StrictStr, Field(min_length=1)]
    width: PositiveInt
    height: PositiveInt


class CocoCategory(_Model):
    id: StrictInt
    name: Annotated[StrictStr, Field(min_length=1)]
    supercategory: StrictStr = ""


class CocoAnnotation(_Model):
    id: Optional[StrictInt] = None
    image_id: StrictInt
    category_id: StrictInt
    segmentation: Segmentation
    bbox: Optional[Annotated[list[Number], Field(min_length=4, max_length=4)]] = None
    area: Optional[Annotated[Number, Field(ge=0)]] = None
    iscrowd: Literal[0, 1] = 0


class CocoInstances(_Model):
    """A COCO instances file: ``images``, ``annotations`` and ``categories`` are required."""

    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


_UNION_TAGS = {"polygon", "rle"}


def format_loc(loc: tuple) -> str:
    """``('annotations', 12, 'segmentation', 'polygon', 0)`` -> ``annotations[12].segmentation[0]``."""
    out = ""
    for k, part in enumerate(loc):
        if isinstance(part, str) and part in _UNION_TAGS and k > 0 and loc[k - 1] == "segmentation":
            continue  # the discriminator's tag, not a JSON key
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _problem(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "missing":
        msg = "required field is missing"
    return msg


def parse_instances(json_path: Path) -> CocoInstances:
    """Read and structurally validate a COCO instances JSON file.

    Raises:
        AnnotatorError: ``<file>: <field>: <problem>`` for the first problem found (with the
            number of further problems), or for an unreadable / non-JSON file.
    """
    json_path = Path(json_path)
    name = json_path.name
    try:
        data = json_path.read_bytes()
    except OSError as exc:
        raise AnnotatorError(f"{json_path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return CocoInstances.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise AnnotatorError(f"{name}: not valid JSON: {first['ctx'].get('error', first['msg'])}") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise AnnotatorError(f"{name}: (top level): expected a JSON object with images, annotations, "
                                 "categories") from None
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise AnnotatorError(f"{name}: {format_loc(first['loc'])}: {_problem(first)}{more}") from None
