#!/usr/bin/env python3
"""Builds the VM test's initramfs (tests/vm/run.sh calls this).

usage: initramfs.py OUT.cpio.gz MODULES_ROOT INIT BUSYBOX BIN... -- MODULE...

- MODULES_ROOT: an extracted kernel package's lib/modules/VERSION directory.
- The named modules are found under it (plain .ko, or .ko.xz / .ko.zst,
  which are unpacked), their dependencies are followed through each module's
  own `depends=` field (there is no modules.dep: depmod runs at install time),
  and they are written to /lib/modules/NAME.ko with /lib/modules/order listing
  them in load order.
- INIT becomes /init, BUSYBOX /bin/busybox, each BIN /bin/NAME; a BIN
  written SRC=DEST is put at the absolute path DEST instead (a shared
  library and its loader for a dynamically linked tool), parent directories
  made as needed.

Written in Python because the archive needs a /dev/console node (the kernel
opens it for init's stdio before devtmpfs is mounted), which cpio can only
make as root, and because the host may have no cpio at all. Format: newc.
"""

import gzip
import lzma
import os
import shutil
import stat
import subprocess
import sys


def find_modules(root):
    """Maps module name (with '-' and '_' equivalent) to its file."""
    found = {}
    for d, _, files in os.walk(root):
        for f in files:
            for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if f.endswith(ext):
                    name = f[: -len(ext)].replace("_", "-")
                    found[name] = os.path.join(d, f)
    return found


def module_bytes(path):
    if path.endswith(".xz"):
        return lzma.decompress(open(path, "rb").read())
    if path.endswith(".gz"):
        return gzip.decompress(open(path, "rb").read())
    if path.endswith(".zst"):
        if not shutil.which("zstd"):
            sys.exit(f"initramfs: {path} is zstd-compressed and zstd is not installed")
        return subprocess.run(
            ["zstd", "-dc", path], check=True, stdout=subprocess.PIPE
        ).stdout
    return open(path, "rb").read()


def depends(data):
    """The module's `depends=` list, from its .modinfo section."""
    i = data.find(b"\0depends=")
    if i < 0:
        return []
    end = data.index(b"\0", i + 1)
    value = data[i + len(b"\0depends=") : end].decode()
    return [m.replace("_", "-") for m in value.split(",") if m]


def load_order(wanted, available):
    order, seen = [], set()

    def visit(name, chain):
        if name in seen:
            return
        if name in chain:
            sys.exit(f"initramfs: dependency cycle at {name}")
        if name not in available:
            sys.exit(f"initramfs: module {name} not in the kernel package")
        data = module_bytes(available[name])
        for dep in depends(data):
            visit(dep, chain + [name])
        seen.add(name)
        order.append((name, data))

    for name in wanted:
        visit(name.replace("_", "-"), [])
    return order


class Newc:
    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}"
            for v in (
                self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                len(name_b), 0,
            )
        )
        self.ino += 1
        self.out += header.encode() + name_b
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o755):
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    sep = argv.index("--")
    out, modroot, init, busybox, *bins = argv[1:sep]
    wanted = argv[sep + 1 :]
    order = load_order(wanted, find_modules(modroot))

    a = Newc()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.chardev("dev/null", 1, 3)
    a.file("init", open(init, "rb").read())
    a.file("bin/busybox", open(busybox, "rb").read())
    made = {"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"}
    for b in bins:
        src, _, dest = b.partition("=")
        dest = dest.lstrip("/") if dest else "bin/" + os.path.basename(src)
        parts = dest.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                a.dir(d)
                made.add(d)
        a.file(dest, open(src, "rb").read())
    for name, data in order:
        a.file(f"lib/modules/{name}.ko", data, 0o644)
    a.file("lib/modules/order", "".join(n + "\n" for n, _ in order).encode(), 0o644)
    with open(out, "wb") as f:
        f.write(gzip.compress(a.finish(), compresslevel=1))
    print("modules: " + " ".join(n for n, _ in order))


if __name__ == "__main__":
    main(sys.argv)
