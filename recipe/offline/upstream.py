"""Writers of the upstream formats convert/ reads, for content made up offline: img2dataset WebDataset tars, MMC4
document shards (`docs_shard_<n>_v2.jsonl.zip`, images as separate files) and OpenFlamingo's ChatGPT sequences."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterable


def write_tar(path: str, members: Iterable[tuple[str, bytes]]) -> str:
    """A plain tar of `(member name, bytes)`, in order (a WebDataset shard when names group by key)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_jsonl_zip(path: str, lines: Iterable[str]) -> str:
    """`<name>.jsonl.zip` holding the lines in one member `<name>.jsonl` (MMC4's shard layout)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(os.path.basename(path).removesuffix(".zip"), "".join(line + "\n" for line in lines))
    return path


def write_img2dataset_tar(path: str, samples: Iterable[tuple[str, bytes, str, dict]]) -> str:
    """One img2dataset shard: per `(key, jpeg bytes, caption, metadata)` sample `<key>.jpg`, `<key>.txt` and
    `<key>.json` (the metadata with `key` and `status: success` added)."""
    return write_tar(path, (member for key, image, caption, meta in samples for member in (
        (f"{key}.jpg", image), (f"{key}.txt", caption.encode()),
        (f"{key}.json", json.dumps({"key": key, "status": "success", **meta}).encode()))))


def mmc4_document(url: str, texts: list[str], image_names: list[str], matched: list[int],
                  similarity: list[list[float]]) -> dict:
    """One MMC4 document: image k is the file `image_names[k]`, assigned to sentence `matched[k]`;
    `similarity` is the image x sentence matrix."""
    infos = [{"image_name": name, "raw_url": f"https://example.com/{name}", "matched_text_index": t,
              "matched_sim": similarity[k][t]} for k, (name, t) in enumerate(zip(image_names, matched))]
    return {"url": url, "text_list": texts, "image_info": infos, "similarity_matrix": similarity,
            "could_have_url_duplicate": 0}


def write_mmc4_shard(path: str, documents: Iterable[dict]) -> str:
    """An MMC4 document shard: `path` (`docs_shard_<n>_v2.jsonl.zip`) holds the documents as one JSON line each
    in a single `.jsonl` member of the same name."""
    return write_jsonl_zip(path, (json.dumps(d) for d in documents))


def chatgpt_sequence(key: str, segments: list[str], images: list[bytes]) -> dict:
    """An OpenFlamingo ChatGPT sequence: the segments joined by spaces, image k (1-based) at the placeholder
    `_!_IMAGE<k>_!_` after segment k, images in `image_map` as base64."""
    parts = [segments[0]]
    for k, segment in enumerate(segments[1:], start=1):
        parts += [f"_!_IMAGE{k}_!_", segment]
    image_map = {f"_!_IMAGE{k}_!_": {"base64_image": base64.b64encode(data).decode()}
                 for k, data in enumerate(images, start=1)}
    return {"is_gpt": True, "key": key, "example": " ".join(parts), "image_map": image_map}


def write_jsonl(path: str, records: Iterable[dict]) -> str:
    """One JSON object per line (ChatGPT sequences, or own data for convert/jsonl_to_mds.py)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return path
