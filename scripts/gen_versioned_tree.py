#!/usr/bin/env python3
"""Deterministic generator of a versioned data set shaped like a source tree.

Used by scripts/bench-vs-restic; runs on its own too:

    scripts/gen_versioned_tree.py OUT [--scale F] [--seed N] [--versions 8]

writes OUT/v1 .. OUT/v8 (full copies) and prints one line per version.

Version 1 at scale 1 is about 40 MiB:
  * ~6000 code-like text files of a few KiB (log-normal sizes, median 3 KiB),
    in ~300 directories, with identifiers drawn per module from a Zipf
    vocabulary so they compress like real code (zstd ~3-4x);
  * 5 larger text files (1-3 MiB: generated sources, a minified bundle, CSV
    fixtures, a log);
  * 6 binary files (0.3-3 MiB): incompressible "images"/archives and
    half-compressible "executables".
Each later version: edits to ~3% of the small files (changed, inserted and
deleted lines), ~1.5% new files, ~0.7% renamed or moved files plus one renamed
directory, ~0.3% deleted files, insertions in a large source, an append to a
log, a few bytes patched in a binary and one new binary asset.

Everything comes from one random.Random(seed): the same seed and scale give
byte-identical versions.
"""

import argparse
import math
import os
import random
import shutil
import sys

TEXT_EXTS = ["rs", "rs", "rs", "py", "c", "h", "js", "ts", "go", "md", "toml"]


def _fake_words(rng, n):
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r",
              "s", "t", "v", "w", "st", "tr", "pr", "ch", "sh", "gr", "bl", "cl"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "io", "ai"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "ck", "nd", "st", "rt", "x"]
    words = set()
    while len(words) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                    for _ in range(rng.choice((1, 2, 2, 3))))
        if 2 <= len(w) <= 12:
            words.add(w)
    return sorted(words)


def _zipf_cum(n, s=1.1):
    acc, cum = 0.0, []
    for i in range(n):
        acc += 1.0 / (i + 1) ** s
        cum.append(acc)
    return cum


class Vocabulary:
    def __init__(self, rng):
        self.words = _fake_words(rng, 3000)
        rng.shuffle(self.words)
        self.cum = _zipf_cum(len(self.words))
        self.keywords_py = ["def", "return", "import", "from", "class", "if",
                            "else", "for", "in", "while", "with", "as", "None"]

    def pick(self, rng, k):
        return rng.choices(self.words, cum_weights=self.cum, k=k)


def _snake(parts):
    return "_".join(parts)


def _camel(parts):
    return "".join(p.capitalize() for p in parts)


class Module:
    """Identifiers shared by the files of one directory."""

    def __init__(self, rng, vocab):
        w = vocab.pick(rng, 400)
        self.ids = [_snake(w[i:i + rng.choice((1, 2, 2, 3))]) for i in range(0, 240, 3)]
        self.types = [_camel(w[i:i + rng.choice((1, 2))]) for i in range(240, 330, 3)]
        self.words = w
        self.id_cum = _zipf_cum(len(self.ids), 0.9)
        self.ty_cum = _zipf_cum(len(self.types), 0.9)


# Statement templates: (format, indent change before, indent change after).
# {0}..{3} identifiers, {T} {U} types, {n} a number, {c} a comment.
TEMPLATES = [
    ("let {0} = {1}.{2}({3});", 0, 0, 10),
    ("let mut {0}: {T} = {U}::new({n});", 0, 0, 4),
    ("if {0}.{1} > {n} {{", 0, 1, 4),
    ("}}", -1, 0, 8),
    ("for {0} in {1}.iter() {{", 0, 1, 3),
    ("{0}.{1}({2}, {3})?;", 0, 0, 8),
    ("return Ok({0});", 0, 0, 2),
    ("// {c}", 0, 0, 6),
    ("self.{0} = {1}.{2};", 0, 0, 4),
    ("match {0} {{", 0, 1, 2),
    ("{T}::{U} => {1}({2}),", 0, 0, 4),
    ("pub fn {0}(&self, {1}: &{T}, {2}: usize) -> Result<{U}> {{", 0, 1, 2),
    ("#[derive(Debug, Clone)]", 0, 0, 1),
    ("pub struct {T} {{", 0, 1, 1),
    ("{0}: {T},", 0, 0, 3),
    ("use crate::{0}::{{{T}, {U}}};", 0, 0, 2),
    ("assert_eq!({0}.len(), {n}, \"{c}\");", 0, 0, 2),
    ("", 0, 0, 6),
]
_TPL_FMT = [t[0] for t in TEMPLATES]
_TPL_CUM = []
_acc = 0
for _t in TEMPLATES:
    _acc += _t[3]
    _TPL_CUM.append(_acc)
_TPL_INDEX = {t[0]: i for i, t in enumerate(TEMPLATES)}
_NUMS = [str(n) for n in (0, 1, 2, 3, 4, 8, 16, 32, 64, 100, 128, 255, 256, 1024, 4096, 65536)] + \
        [str(n) for n in range(5, 60)]


def code_lines(rng, mod, nbytes):
    """Code-like lines totalling about nbytes."""
    est = max(4, nbytes // 32)
    tpls = rng.choices(range(len(TEMPLATES)), cum_weights=_TPL_CUM, k=est)
    ids = rng.choices(mod.ids, cum_weights=mod.id_cum, k=est * 4)
    tys = rng.choices(mod.types, cum_weights=mod.ty_cum, k=est * 2)
    nums = rng.choices(_NUMS, k=est)
    cwords = rng.choices(mod.words, k=est * 6)
    lines, size, depth = [], 0, 0
    for i, ti in enumerate(tpls):
        fmt, pre, post, _ = TEMPLATES[ti]
        if pre < 0 and depth == 0:
            continue
        if post > 0 and depth >= 5:
            continue
        depth += pre
        c = " ".join(cwords[i * 6: i * 6 + 3 + (i % 4)])
        line = fmt.format(ids[4 * i], ids[4 * i + 1], ids[4 * i + 2], ids[4 * i + 3],
                          T=tys[2 * i], U=tys[2 * i + 1], n=nums[i], c=c)
        if line:
            line = "    " * depth + line
        depth += post
        lines.append(line)
        size += len(line) + 1
        if size >= nbytes:
            break
    while depth > 0:
        depth -= 1
        lines.append("    " * depth + "}")
    return lines


def prose_lines(rng, mod, nbytes):
    words = rng.choices(mod.words, k=max(8, nbytes // 6))
    lines, i, size = [], 0, 0
    while size < nbytes and i < len(words):
        k = rng.randint(6, 14)
        line = " ".join(words[i:i + k])
        i += k
        if rng.random() < 0.08:
            line = "## " + line.capitalize()
            lines.append("")
        lines.append(line)
        size += len(line) + 1
    return lines


def _join(lines):
    return ("\n".join(lines) + "\n").encode()


def random_bytes(rng, n):
    return rng.randbytes(n)


def exe_bytes(rng, n):
    """Half-compressible, like an executable: random code interleaved with
    tables, zero padding and strings."""
    out, size = [], 0
    while size < n:
        k = rng.random()
        if k < 0.45:
            b = rng.randbytes(rng.randint(512, 8192))
        elif k < 0.65:
            b = bytes(rng.randint(256, 4096))
        elif k < 0.85:
            stride = rng.randint(4, 16)
            base = rng.randbytes(stride)
            b = base * rng.randint(32, 512)
        else:
            b = b"\0".join(w.encode() for w in rng.choices(_NUMS + ["error", "warning", "failed to", "invalid", "config", "handler"], k=rng.randint(50, 400)))
        out.append(b)
        size += len(b)
    return b"".join(out)[:n]


class VersionedTree:
    def __init__(self, seed=1, scale=1.0):
        self.rng = random.Random(seed)
        self.scale = scale
        self.vocab = Vocabulary(self.rng)
        self.files = {}      # relative path -> bytes
        self.kind = {}       # relative path -> "code" | "doc" | "big" | "log" | "bin"
        self.module = {}     # directory -> Module
        self.version = 0
        self._on_disk = {}   # what sync() last wrote: path -> bytes object
        self._renames = []   # (old, new) since the last sync
        self._dir_serial = 0

    # ---------------------------------------------------------------- model
    def _new_dir(self, parent=None):
        rng = self.rng
        self._dir_serial += 1
        name = _snake(self.vocab.pick(rng, rng.choice((1, 1, 2))))
        if parent is None:
            top = rng.choice(["src", "src", "src", "lib", "crates", "tests", "tools", "docs"])
            parent = top
        d = f"{parent}/{name}{self._dir_serial if rng.random() < 0.3 else ''}"
        while d in self.module:
            d += "x"
        self.module[d] = Module(rng, self.vocab)
        return d

    def _small_size(self):
        return int(min(65536, max(200, self.rng.lognormvariate(math.log(3000), 0.8))))

    def _new_small_file(self, d):
        rng = self.rng
        if d not in self.module:
            self.module[d] = Module(rng, self.vocab)
        mod = self.module[d]
        ext = rng.choice(TEXT_EXTS)
        while True:
            name = f"{d}/{_snake(self.vocab.pick(rng, rng.choice((1, 2, 2, 3))))}.{ext}"
            if name not in self.files:
                break
        n = self._small_size()
        if ext in ("md",):
            lines = prose_lines(rng, mod, n)
            self.kind[name] = "doc"
        else:
            lines = code_lines(rng, mod, n)
            self.kind[name] = "code"
        self.files[name] = _join(lines)
        return name

    def _build_v1(self):
        rng, s = self.rng, self.scale
        n_small = max(20, int(6000 * s))
        n_dirs = max(3, int(300 * s))
        dirs = []
        for _ in range(n_dirs):
            parent = rng.choice(dirs) if dirs and rng.random() < 0.4 else None
            dirs.append(self._new_dir(parent))
        for _ in range(n_small):
            self._new_small_file(rng.choice(dirs))
        mb = 1 << 20
        big_mod = self.module[dirs[0]]
        bigs = [
            ("src/generated/bindings.rs", "big", 3.0),
            ("vendor/web/bundle.min.js", "big", 2.0),
            ("tests/fixtures/records.csv", "big", 1.5),
            ("docs/reference/api.md", "big", 1.0),
            ("logs/build.log", "log", 1.5),
        ]
        for path, kind, mib in bigs:
            n = max(4096, int(mib * mb * s))
            if path.endswith(".csv"):
                lines = [",".join([str(rng.randrange(10 ** rng.randint(1, 7))) for _ in range(4)] + big_mod.words[i % 300: i % 300 + 2])
                         for i in range(n // 40)]
            elif path.endswith(".md"):
                lines = prose_lines(rng, big_mod, n)
            elif path.endswith(".log"):
                lines = self._log_lines(n)
            else:
                lines = code_lines(rng, Module(rng, self.vocab), n)
                if path.endswith(".js"):  # minified: long lines
                    lines = [" ".join(l.strip() for l in lines[i:i + 40]) for i in range(0, len(lines), 40)]
            self.files[path] = _join(lines)
            self.kind[path] = kind
        bins = [
            ("assets/images/hero.png", random_bytes, 3.0),
            ("assets/images/logo.png", random_bytes, 0.3),
            ("assets/fonts/Sans.woff2", random_bytes, 0.6),
            ("third_party/archive.tar.gz", random_bytes, 2.0),
            ("tools/bin/helper", exe_bytes, 2.5),
            ("tools/bin/libcodec.so", exe_bytes, 1.5),
        ]
        for path, fn, mib in bins:
            self.files[path] = fn(rng, max(4096, int(mib * mb * s)))
            self.kind[path] = "bin"

    def _log_lines(self, n):
        rng = self.rng
        lvls = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
        words = self.vocab.pick(rng, max(16, n // 8))
        lines, size, i = [], 0, 0
        t = 1_700_000_000 + self.version * 86400
        while size < n and i + 8 <= len(words):
            t += rng.randint(0, 3)
            line = f"{t} {rng.choice(lvls)} [{words[i]}] {' '.join(words[i + 1:i + 8])} took {rng.randint(1, 999)}ms"
            i += 8
            lines.append(line)
            size += len(line) + 1
        return lines

    def _edit_text(self, path):
        rng = self.rng
        d = path.rsplit("/", 1)[0]
        mod = self.module.get(d) or Module(rng, self.vocab)
        self.module.setdefault(d, mod)
        lines = self.files[path].decode().split("\n")
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            pos = rng.randrange(max(1, len(lines)))
            k = rng.random()
            if k < 0.45:  # change a few lines
                m = rng.randint(1, 3)
                lines[pos:pos + m] = code_lines(rng, mod, 40 * m)[:m]
            elif k < 0.85:  # insert a block
                lines[pos:pos] = code_lines(rng, mod, rng.randint(80, 1200))
            else:  # delete some lines
                del lines[pos:pos + rng.randint(1, 10)]
        self.files[path] = "\n".join(lines).encode()

    def _rename(self, old, new):
        self.files[new] = self.files.pop(old)
        self.kind[new] = self.kind.pop(old)
        self._renames.append((old, new))

    def _advance(self):
        rng, s = self.rng, self.scale
        small = sorted(p for p, k in self.kind.items() if k in ("code", "doc"))
        n = len(small)
        dirs = sorted({p.rsplit("/", 1)[0] for p in small})
        # edits
        for p in rng.sample(small, max(1, int(n * 0.03))):
            self._edit_text(p)
        # renames and moves of single files
        moved = set()
        for p in rng.sample(small, max(1, int(n * 0.007))):
            d, base = p.rsplit("/", 1)
            if rng.random() < 0.5:
                d = rng.choice(dirs)
            else:
                base = _snake(self.vocab.pick(rng, 2)) + "." + base.rsplit(".", 1)[-1]
            new = f"{d}/{base}"
            if new not in self.files:
                self._rename(p, new)
                moved.add(new)
        # one directory renamed (a refactoring)
        d = rng.choice(dirs)
        nd = d.rsplit("/", 1)[0] + "/" + _snake(self.vocab.pick(rng, 2)) + f"_v{self.version + 1}"
        if nd not in self.module and not any(p.startswith(nd + "/") for p in self.files):
            for m in sorted(self.module):
                if m == d or m.startswith(d + "/"):
                    self.module[nd + m[len(d):]] = self.module[m]
            for p in sorted(self.files):
                if p.startswith(d + "/"):
                    self._rename(p, nd + p[len(d):])
        # deletions
        small = sorted(p for p, k in self.kind.items() if k in ("code", "doc"))
        for p in rng.sample(small, max(1, int(len(small) * 0.003))):
            del self.files[p]
            del self.kind[p]
        # additions, some in a new directory
        newdir = self._new_dir(rng.choice(dirs))
        dirs = sorted({p.rsplit("/", 1)[0] for p in small}) + [newdir]
        for _ in range(max(1, int(n * 0.015))):
            self._new_small_file(newdir if rng.random() < 0.3 else rng.choice(dirs))
        # large text: insertions in a generated source, append to the log
        bigs = sorted(p for p, k in self.kind.items() if k == "big")
        p = rng.choice(bigs)
        lines = self.files[p].decode().split("\n")
        mod = Module(rng, self.vocab)
        for _ in range(3):
            pos = rng.randrange(len(lines))
            lines[pos:pos] = code_lines(rng, mod, rng.randint(200, 4000))
        self.files[p] = "\n".join(lines).encode()
        for p in sorted(p for p, k in self.kind.items() if k == "log"):
            self.files[p] = self.files[p] + _join(self._log_lines(max(2048, int(len(self.files[p]) * 0.02))))
        # binaries: a few bytes patched in one, one new asset
        bins = sorted(p for p, k in self.kind.items() if k == "bin")
        p = rng.choice(bins)
        b = bytearray(self.files[p])
        for _ in range(3):
            off = rng.randrange(len(b))
            patch = rng.randbytes(rng.randint(16, 256))
            b[off:off + len(patch)] = patch
        self.files[p] = bytes(b)
        name = f"assets/images/shot_{self.version + 1}_{_snake(self.vocab.pick(rng, 1))}.png"
        self.files[name] = random_bytes(rng, max(1024, int(rng.randint(50, 300) * 1024 * s)))
        self.kind[name] = "bin"

    def advance(self):
        """Makes the next version (version 1 first)."""
        if self.version == 0:
            self._build_v1()
        else:
            self._advance()
        self.version += 1
        return self

    # ----------------------------------------------------------------- disk
    def total_bytes(self):
        return sum(len(b) for b in self.files.values())

    def sync(self, root):
        """Makes the directory root hold exactly this version, touching only
        what changed since the last sync to root (renames are renames, so
        unchanged files keep their inode and mtime, as in a real work tree)."""
        on_disk = self._on_disk
        for old, new in self._renames:
            if old in on_disk:
                dst = os.path.join(root, new)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.rename(os.path.join(root, old), dst)
                on_disk[new] = on_disk.pop(old)
        self._renames = []
        for p in [p for p in on_disk if p not in self.files]:
            os.unlink(os.path.join(root, p))
            del on_disk[p]
        for p, data in self.files.items():
            if on_disk.get(p) is not data:
                dst = os.path.join(root, p)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(data)
                on_disk[p] = data
        # drop directories left empty by moves and deletions (as git does)
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            if dirpath != root and not os.listdir(dirpath):
                os.rmdir(dirpath)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--versions", type=int, default=8)
    a = ap.parse_args()
    t = VersionedTree(a.seed, a.scale)
    total = 0
    for v in range(1, a.versions + 1):
        t.advance()
        d = os.path.join(a.out, f"v{v}")
        if os.path.exists(d):
            shutil.rmtree(d)
        t._on_disk = {}
        t._renames = []
        t.sync(d)
        total += t.total_bytes()
        print(f"v{v}: {len(t.files)} files, {t.total_bytes() / 2**20:.1f} MiB")
    print(f"total over {a.versions} versions: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
