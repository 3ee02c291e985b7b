"""Convert OpenAI CLIP's BPE vocabulary into Hugging Face ``vocab.json`` + ``merges.txt``.

Run once; the result is committed under ``tutorial_lib/assets/clip_tokenizer/``
so that ``tutorial_lib.text.load_clip_tokenizer()`` works offline with no
model hub, no download and no ``open_clip`` import (notebook 02).

Where the vocabulary comes from
-------------------------------
OpenAI released CLIP's byte-level BPE as ``bpe_simple_vocab_16e6.txt.gz`` (MIT
licence, Copyright (c) 2021 OpenAI). The same file ships, unchanged, inside the
PyPI wheel of ``open-clip-torch`` (MIT licence) as
``open_clip/bpe_simple_vocab_16e6.txt.gz``. We read it straight out of the
wheel with ``zipfile``: the wheel is never installed (it would pull in
torchvision, which breaks beside the course's CPU torch) and ``open_clip`` is
never imported. Get the wheel with::

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/oc
    python scripts/build_clip_vocab.py --wheel /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl

(``--bpe path/to/bpe_simple_vocab_16e6.txt.gz`` works too.)

How the ids are built (as in CLIP's ``SimpleTokenizer``)
--------------------------------------------------------
1. the 256 byte symbols of GPT-2's reversible byte-to-unicode table (ids 0-255),
2. the same 256 symbols with the end-of-word marker ``</w>`` (ids 256-511),
3. one token per merge rule, in rank order: lines 1 .. 48894 of the file
   (line 0 is a header; 49152 - 256 - 2 merges are used) -> ids 512-49405,
4. ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407.

That is the 49408-entry vocabulary of ``openai/clip-vit-large-patch14`` (and of
OpenCLIP's ViT-H/14 and ViT-bigG/14: they share the tokenizer). The script
checks the result by tokenising a few prompts with ``transformers.CLIPTokenizer``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import zipfile
from pathlib import Path

# sha256 of the gzip file as shipped in open-clip-torch 3.3.0 (identical to the
# one in OpenAI's CLIP repository). A different file is refused unless --force.
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # 48894, as in CLIP's SimpleTokenizer
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tutorial_lib" / "assets" / "clip_tokenizer"

# What `CLIPTokenizer.from_pretrained(folder)` reads besides the two vocabulary
# files. These are the values of openai/clip-vit-large-patch14's tokenizer
# (SD 1.x's `tokenizer/`): pad == eos == unk == "<|endoftext|>" (id 49407).
TOKENIZER_CONFIG = {
    "tokenizer_class": "CLIPTokenizer",
    "model_max_length": 77,
    "bos_token": BOS,
    "eos_token": EOS,
    "unk_token": EOS,
    "pad_token": EOS,
    "do_lower_case": True,
    "errors": "replace",
    "add_prefix_space": False,
}

LICENSE_HEADER = """\
The files vocab.json and merges.txt in this folder are a format conversion
(by scripts/build_clip_vocab.py) of `bpe_simple_vocab_16e6.txt.gz`, the byte-level
BPE vocabulary of OpenAI's CLIP, as distributed in the PyPI package
open-clip-torch ({source}; sha256 of the .gz: {sha}).

Both upstream projects are released under the MIT licence; their notices follow.

------------------------------------------------------------------------------
OpenAI CLIP (https://github.com/openai/CLIP)

MIT License

Copyright (c) 2021 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.

------------------------------------------------------------------------------
OpenCLIP (https://github.com/mlfoundations/open_clip), licence file of the wheel:

"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def read_sources(wheel: Path | None, bpe: Path | None) -> tuple[bytes, str, str]:
    """Return (gzip bytes, licence text of the wheel or "", a description of the source)."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            gz = zf.read(BPE_MEMBER)
            licence = ""
            for name in zf.namelist():
                if ".dist-info/" in name and Path(name).name.upper().startswith("LICENSE"):
                    licence = zf.read(name).decode("utf-8")
                    break
        return gz, licence, wheel.name
    assert bpe is not None
    return bpe.read_bytes(), "", bpe.name


def build(gz: bytes) -> tuple[dict[str, int], list[str]]:
    """Build the 49408-entry vocabulary and the 48894 merge rules from the gzip bytes."""
    lines = gzip.decompress(gz).decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError("unexpected BPE file: every merge line must hold two symbols")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != 49408:
        raise ValueError(f"expected 49408 distinct tokens, got {len(vocab)}")
    return vocab, merges


def write(
    out: Path, vocab: dict[str, int], merges: list[str], licence: str, source: str, sha: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # One token per line keeps the file diffable; ensure_ascii=False keeps it small.
    body = ",\n".join(f"{json.dumps(tok, ensure_ascii=False)}: {i}" for tok, i in vocab.items())
    (out / "vocab.json").write_text("{\n" + body + "\n}\n", encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(TOKENIZER_CONFIG, indent=2) + "\n", encoding="utf-8"
    )
    (out / "LICENSE").write_text(
        LICENSE_HEADER.format(source=source, sha=sha) + licence.strip() + "\n", encoding="utf-8"
    )


def check(out: Path) -> None:
    """Tokenise known prompts with transformers and compare with the ids of openai/clip-vit-large-patch14."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(out))
    expected = {
        "a cat": [49406, 320, 2368, 49407],
        "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    }
    for text, ids in expected.items():
        got = tok(text)["input_ids"]
        if got != ids:
            raise SystemExit(f"check failed for {text!r}: {got} != {ids}")
    print(f"checked: {len(tok)} tokens, 'a cat' -> {tok('a cat')['input_ids']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--wheel", type=Path, help="an open-clip-torch .whl (downloaded with --no-deps)"
    )
    src.add_argument("--bpe", type=Path, help="bpe_simple_vocab_16e6.txt.gz itself")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="accept a file with another sha256")
    parser.add_argument("--no-check", action="store_true", help="skip the transformers check")
    args = parser.parse_args(argv)

    gz, licence, source = read_sources(args.wheel, args.bpe)
    sha = hashlib.sha256(gz).hexdigest()
    if sha != BPE_SHA256 and not args.force:
        raise SystemExit(f"sha256 {sha} differs from the known {BPE_SHA256} (use --force)")
    vocab, merges = build(gz)
    write(args.out, vocab, merges, licence, source, sha)
    print(f"wrote {args.out} ({len(vocab)} tokens, {len(merges)} merges)")
    if not args.no_check:
        check(args.out)


if __name__ == "__main__":
    main()
