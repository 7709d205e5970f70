"""``manifest.json``: what each artefact's bytes were when it was written, what it was made from, and the
verdict ``verify`` gave those bytes. This module reads and writes it; ``trust.py`` decides what it means.

    {"schema": 1, "artifacts": {"model.onnx": {"sha256", "parent", "parent_sha256", "created_by", "versions",
                                               "verified": {"passed", "sha256", "verify_sha256", ...}, ...}}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from ... import __version__
from ...errors import BadInput
from .. import schema
from .files import MAX_JSON_BYTES, parse_json, read_file, sha256_file, write_json
from .names import MANIFEST

__all__ = ["MANIFEST_SCHEMA", "forget", "parse_manifest", "read_manifest", "record", "record_verdicts"]

MANIFEST_SCHEMA = 1


def parse_manifest(data: Optional[bytes], where: object) -> Dict[str, Any]:
    """A manifest's bytes, their shape checked (``schema.MANIFEST``); an empty manifest for None (no file)."""
    if data is None:
        return {"schema": MANIFEST_SCHEMA, "artifacts": {}}
    manifest = parse_json(data, where, schema.MANIFEST)
    if manifest["schema"] != MANIFEST_SCHEMA:
        raise BadInput(f"{where} has schema {manifest['schema']!r}; expected {MANIFEST_SCHEMA}, the manifest this "
                       f"attn-export {__version__} reads (a newer or foreign manifest: use the attn-export that wrote it, or make the directory again with this "
                       "one, from attn-export train or load)")
    return manifest


def read_manifest(directory: Path) -> Dict[str, Any]:
    """DIR's manifest, its shape checked; an empty one where DIR has none yet (the writers' read)."""
    path = directory / MANIFEST
    return parse_manifest(read_file(path, MAX_JSON_BYTES, "JSON file") if path.is_file() else None, path)


def record(
    directory: Path,
    name: str,
    command: str,
    parent: Optional[str] = None,
    parent_sha256: Optional[str] = None,
    versions: Optional[Dict[str, str]] = None,
    **extra: Any,
) -> Dict[str, Any]:
    """Record ``directory/name`` in the manifest (written last, atomically) and return its entry. A file made
    from another records that parent with the sha256 of the very bytes it was made from (the writer read
    them through the store), so that lineage says what was used, not what lies on disk now. Bytes written
    again, identical and from the same parent, keep the verdict verify gave them: it is tied to the bytes."""
    if (parent is None) != (parent_sha256 is None):
        raise ValueError("record: parent and parent_sha256 go together")
    manifest = read_manifest(directory)
    entry: Dict[str, Any] = {
        "sha256": sha256_file(directory / name),
        "parent": parent,
        "parent_sha256": parent_sha256,
        "created_by": f"attn-export {__version__} {command}",
        "versions": versions or {},
    }
    entry.update(extra)
    before = manifest["artifacts"].get(name) or {}
    verdict = before.get("verified")
    if (verdict and verdict.get("sha256") == entry["sha256"]
            and all(before.get(key) == entry[key] for key in ("sha256", "parent", "parent_sha256"))):
        entry["verified"] = verdict
    manifest["schema"] = MANIFEST_SCHEMA
    manifest["artifacts"][name] = entry
    write_json(directory / MANIFEST, manifest)
    return entry


def record_verdicts(directory: Path, verdicts: Mapping[str, Optional[Dict[str, Any]]]) -> None:
    """Write ``verify``'s verdicts (artefact name -> ``verified`` entry, each tied to the sha256 of the bytes
    verify ran; None: the earlier verdict is withdrawn) into the manifest, for the artefacts it still records."""
    manifest = read_manifest(directory)
    entries = manifest["artifacts"]
    for name, verdict in verdicts.items():
        if name in entries and verdict is None:
            entries[name].pop("verified", None)
        elif name in entries:
            entries[name]["verified"] = verdict
    write_json(directory / MANIFEST, manifest)


def forget(directory: Path, names: Sequence[str]) -> None:
    """Remove ``names`` from ``directory`` and their entries from the manifest (the files first: a crash in
    between leaves entries of missing files, which nothing trusts)."""
    for name in names:
        (directory / name).unlink(missing_ok=True)
    manifest = read_manifest(directory)
    for name in names:
        manifest["artifacts"].pop(name, None)
    write_json(directory / MANIFEST, manifest)
