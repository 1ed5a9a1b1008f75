"""Label maps: class ids (from 1) to class names, in the TF Object Detection API's ``.pbtxt`` text format.

The text format is ``object_detection.protos.StringIntLabelMap`` (``protos/odapi/string_int_label_map.proto``, the
upstream messages and field numbers), parsed with protobuf's own ``text_format``, so OD API label maps with every
upstream field (``display_name``, ``keypoints``, ``ancestor_ids``, ``frequency``...) read unchanged::

    item {
      id: 1
      name: 'road'
    }

Which string names a class follows the OD API's ``label_map_util``: ``name`` by default (the key datasets use),
``display_name`` instead when asked with ``use_display_name=True`` and the item has one. An item whose ``name`` is
empty falls back to its ``display_name``. As upstream, id 0 is reserved for the background: an item
``id: 0 name: 'background'`` (old OD API maps carry one) is skipped, any other id below 1 is an error. Ids and names
must be unique; errors name the source and the item.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from google.protobuf import text_format

from services.errors import InvalidInput
from services.files import atomic_write
from services.gen.odapi import string_int_label_map_pb2

BACKGROUND = "background"


@dataclass(frozen=True)
class LabelMap:
    """Class ids (from 1) to names: ids unique and at least 1, names non-empty and unique.

    Raises:
        InvalidInput: On construction, when any of those rules is broken.
    """

    names: Mapping[int, str]
    _ids: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[int, str] = {}
        seen: dict[str, int] = {}
        for raw_id, name in sorted(self.names.items()):
            class_id = int(raw_id)
            if class_id < 1:
                raise InvalidInput(f"label map id {class_id} ({name!r}) is below 1; ids start at 1")
            if not isinstance(name, str) or not name.strip():
                raise InvalidInput(f"label map id {class_id} has an empty name")
            if name in seen:
                raise InvalidInput(f"label map name {name!r} is used by ids {seen[name]} and {class_id}")
            seen[name] = class_id
            by_id[class_id] = name
        # Frozen and read-only: a label map shared between requests can't be changed under them.
        object.__setattr__(self, "names", MappingProxyType(by_id))
        object.__setattr__(self, "_ids", MappingProxyType(seen))

    @classmethod
    def from_names(cls, names: Sequence[str]) -> LabelMap:
        """Ids 1..K for ``names`` in order."""
        return cls({i: name for i, name in enumerate(names, start=1)})

    def name(self, class_id: int) -> str:
        """The name of ``class_id``.

        Raises:
            KeyError: No such id.
        """
        return self.names[class_id]

    def id(self, name: str) -> int:
        """The id of ``name``.

        Raises:
            KeyError: No such name.
        """
        return self._ids[name]

    def get(self, class_id: int, default: str | None = None) -> str | None:
        """The name of ``class_id``, or ``default``."""
        return self.names.get(class_id, default)

    def label(self, class_id: int) -> str:
        """The name of ``class_id``, or ``class_<id>`` for an id the map does not have (a model's stray class)."""
        return self.names.get(class_id) or f"class_{class_id}"

    @property
    def ids(self) -> list[int]:
        """The ids, ascending."""
        return list(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """``(id, name)`` pairs by id."""
        return iter(self.names.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and dict(self.names) == dict(other.names)

    def __hash__(self) -> int:
        return hash(tuple(self.names.items()))


def parse_label_map(text: str, *, source: str = "<label map>", use_display_name: bool = False) -> LabelMap:
    """Parse a text-format ``StringIntLabelMap``.

    Args:
        text: The ``.pbtxt`` content.
        source: What to call it in error messages (a path, an upload's name).
        use_display_name: Name classes by ``display_name`` where an item has one (the OD API's flag of that name).

    Raises:
        InvalidInput: Malformed text, an id below 1 (other than the background's 0), a duplicate id or name, or an
            item with no name; the message names ``source``.
    """
    message = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise InvalidInput(f"{source}: not a valid label map: {exc}", details={"source": source}) from exc
    names: dict[int, str] = {}
    for number, item in enumerate(message.item, start=1):
        where = f"{source}: item {number}"
        if not item.HasField("id"):
            raise InvalidInput(f"{where} has no id", details={"source": source, "item": number})
        name = item.display_name if use_display_name and item.display_name else item.name or item.display_name
        if item.id == 0 and BACKGROUND in (item.name, item.display_name):
            continue  # the OD API reserves id 0 for the background; it is not a class
        if item.id < 1:
            raise InvalidInput(f"{where} has id {item.id}; ids start at 1", details={"source": source, "item": number})
        if not name.strip():
            raise InvalidInput(f"{where} (id {item.id}) has no name", details={"source": source, "item": number})
        if item.id in names:
            raise InvalidInput(
                f"{where}: id {item.id} is used twice ({names[item.id]!r} and {name!r})",
                details={"source": source, "item": number},
            )
        names[item.id] = name
    if not names:
        raise InvalidInput(f"{source}: the label map has no items", details={"source": source})
    try:
        return LabelMap(names)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}", details={"source": source}) from exc


def format_label_map(label_map: LabelMap) -> str:
    """The label map as ``.pbtxt`` text, one ``item { id: 1 name: '...' }`` block per class, by id."""
    blocks = []
    for class_id, name in label_map:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        blocks.append(f"item {{\n  id: {class_id}\n  name: '{quoted}'\n}}\n")
    return "".join(blocks)


def load_label_map(path: Path, *, use_display_name: bool = False) -> LabelMap:
    """Read and parse the label map at ``path``.

    Raises:
        InvalidInput: Unreadable or invalid; the message names ``path``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the label map: {exc}", details={"source": str(path)}) from exc
    return parse_label_map(text, source=str(path), use_display_name=use_display_name)


def write_label_map(path: Path, label_map: LabelMap) -> None:
    """Write ``label_map`` to ``path`` atomically: a temporary file in the same folder, then renamed into place."""
    atomic_write(Path(path), format_label_map(label_map))
