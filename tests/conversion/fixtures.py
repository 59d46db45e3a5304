"""Builders of tiny, often broken, inputs in the real upstream formats (img2dataset tars/parquet, MMC4 jsonl.zip + image
folders, OpenFlamingo MMC4 and ChatGPT WebDataset tars), and a reader of written MDS datasets."""

import base64
import io
import json

from PIL import Image

from recipe.offline.upstream import write_jsonl_zip, write_tar  # noqa: F401  (re-exported for the tests)


def image_bytes(seed: int, fmt: str = "JPEG", size: int = 24) -> bytes:
    """A small deterministic image; different seeds give different bytes."""
    img = Image.new("RGB", (size + seed % 7, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % size, 0), (255 - (seed % 256), 0, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def truncated_jpeg(seed: int = 99) -> bytes:
    data = image_bytes(seed, size=48)
    return data[: len(data) // 2]


def big_png(side: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def laion_members(key: str, image: bytes | None, caption: bytes | None, meta: dict | bytes | None = None,
                  ext: str = "jpg") -> list[tuple[str, bytes]]:
    """One img2dataset sample: <key>.jpg, <key>.txt, <key>.json."""
    out = []
    if image is not None:
        out.append((f"{key}.{ext}", image))
    if caption is not None:
        out.append((f"{key}.txt", caption))
    if meta is None:
        meta = {"key": key, "url": f"http://example.com/{key}.jpg", "similarity": 0.31, "width": 24, "height": 24,
                "status": "success"}
    out.append((f"{key}.json", meta if isinstance(meta, bytes) else json.dumps(meta).encode()))
    return out


def mmc4_doc(n_sentences: int, images: list[dict], url: str = "http://doc.example/1") -> dict:
    sim = [[round(0.1 + 0.05 * ((i + j) % 5), 3) for j in range(n_sentences)] for i in range(len(images))]
    return {"url": url, "text_list": [f"sentence {j} of {url}." for j in range(n_sentences)],
            "image_info": images, "similarity_matrix": sim, "could_have_url_duplicate": 0}


def mmc4_image(name: str, matched: int = 0, b64: str | None = None) -> dict:
    info = {"image_name": name, "raw_url": f"http://img.example/{name}", "matched_text_index": matched,
            "matched_sim": 0.3}
    if b64 is not None:
        info["image_base64"] = b64
    return info


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chatgpt_seq(images: dict[str, bytes | None], text: str) -> dict:
    return {"is_gpt": True, "example": text,
            "image_map": {k: {"base64_image": b64(v) if isinstance(v, bytes) else v} for k, v in images.items()}}


def read_mds(local: str, remote: str | None = None) -> list[dict]:
    """Every sample of an MDS dataset, read back with StreamingDataset."""
    from streaming import StreamingDataset
    ds = StreamingDataset(local=local, remote=remote, shuffle=False, batch_size=1)
    return [ds[i] for i in range(ds.num_samples)]
