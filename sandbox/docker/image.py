"""Build the Docker sandbox image locally, from the host's own system interpreter.

No registry is reachable (and none should be trusted for this), so the image is a
root file system assembled here and loaded with `docker import`: the system Python
(its binary, standard library with its compiled `.pyc` files, and exactly the shared
libraries `ldd` says it and its extension modules need), the in-container supervisor,
and empty mount points. Nothing else: no shell, no package manager, no compiler.

Differences from the usual `FROM python:3.11-slim`:
- Nothing is pulled; the tag is a hash of everything that goes in, so a changed
  supervisor or interpreter gives a new image and an existing one is reused.
- The interpreter must be a system one (`/usr/bin/python3`), not a pyenv or venv
  shim: its files are copied by path.

Run `python -m sandbox.docker.image [--tar out.tar]` to build (needs an engine at
DOCKER_HOST or the default socket) or just write the root file system tar.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

SUPERVISOR = Path(__file__).with_name("supervisor.py")
IMAGE_REPO = "rlvr-sandbox"
BUILD_VERSION = "1"  # bump when the layout below changes
# Parts of the standard library no sandboxed program needs (GUI, tests, the C API).
_SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
                "dist-packages", "site-packages", "__phello__"}


def _stdlib_dir(python: str) -> Path:
    out = subprocess.run([python, "-I", "-S", "-c", "import sysconfig;"
                          "print(sysconfig.get_paths()['stdlib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _ldd(paths: list[str]) -> set[str]:
    libs: set[str] = set()
    for i in range(0, len(paths), 64):
        out = subprocess.run(["ldd", *paths[i:i + 64]], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            parts = line.split()
            if "=>" in parts:
                j = parts.index("=>")
                if j + 1 < len(parts) and parts[j + 1].startswith("/"):
                    libs.add(parts[j + 1])
            elif parts and parts[0].startswith("/") and "(" in line:
                libs.add(parts[0])  # the dynamic loader
    return libs


def _canonical(path: str) -> str:
    """`path` with its directories resolved (merged /usr) but not its last component."""
    d, name = os.path.split(path)
    return os.path.join(os.path.realpath(d), name)


def plan(python: str = "/usr/bin/python3") -> dict[str, Any]:
    """Everything that goes into the root file system: files, symlinks, directories."""
    real_python = os.path.realpath(python)
    if not os.path.isfile(real_python) or "/.pyenv/" in real_python or "/.venv/" in real_python:
        raise FileNotFoundError(f"{python} is not a system interpreter (resolved to "
                                f"{real_python}); install python3 (apt-get install python3)")
    stdlib = _stdlib_dir(real_python)
    files: list[str] = []
    for root, dirs, names in os.walk(stdlib):
        rel = Path(root).relative_to(stdlib)
        if rel.parts and rel.parts[0] in _SKIP_STDLIB or rel.name.startswith("config-"):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not (not rel.parts and d in _SKIP_STDLIB)]
        files += [os.path.join(root, n) for n in names]
    elf = [real_python] + [f for f in files if f.endswith(".so")]
    symlinks: dict[str, str] = {}
    for lib in sorted(_ldd(elf)):
        p = _canonical(lib)
        while os.path.islink(p):
            target = os.readlink(p)
            symlinks[p] = target
            p = _canonical(os.path.join(os.path.dirname(p), target))
        files.append(p)
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            symlinks[top] = os.readlink(top)
    files.append(real_python)
    symlinks["/usr/bin/python3"] = os.path.basename(real_python)
    locale = "/usr/lib/locale/C.utf8"
    if os.path.isdir(locale):
        for root, _, names in os.walk(locale):
            files += [os.path.join(root, n) for n in names]
    return {"python": real_python, "files": sorted(set(files)), "symlinks": symlinks,
            "dirs": ["/proc", "/sys", "/dev", "/etc", "/scratch", "/tmp", "/opt/rlvr"]}


def image_tag(p: dict[str, Any]) -> str:
    h = hashlib.sha256(BUILD_VERSION.encode())
    h.update(SUPERVISOR.read_bytes())
    for f in p["files"]:
        st = os.stat(f)
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(repr(sorted(p["symlinks"].items())).encode())
    return f"{IMAGE_REPO}:{h.hexdigest()[:16]}"


def write_rootfs(p: dict[str, Any], out: io.BufferedIOBase | str) -> None:
    """The root file system as a tar (owned by root, read-only for everybody else)."""
    tf = tarfile.open(out, "w") if isinstance(out, str) else tarfile.open(fileobj=out, mode="w")
    added: set[str] = set()

    def add_dir(d: str) -> None:
        d = d.rstrip("/")
        if not d or d in added:
            return
        add_dir(os.path.dirname(d))
        ti = tarfile.TarInfo(d.lstrip("/"))
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
        added.add(d)

    with tf:
        for d in p["dirs"]:
            add_dir(d)
        for link, target in sorted(p["symlinks"].items()):
            add_dir(os.path.dirname(link))
            ti = tarfile.TarInfo(link.lstrip("/"))
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
            added.add(link)
        for f in p["files"]:
            if f in added:
                continue
            add_dir(os.path.dirname(f))
            ti = tf.gettarinfo(f, arcname=f.lstrip("/"))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mode &= 0o755
            with open(f, "rb") as fh:
                tf.addfile(ti, fh)
            added.add(f)
        for name, data in (("etc/passwd", b"root:x:0:0::/:/nonexistent\n"),
                           ("etc/group", b"root:x:0:\n"), ("etc/hosts", b""),
                           ("etc/hostname", b""), ("etc/resolv.conf", b""),
                           ("opt/rlvr/supervisor.py", SUPERVISOR.read_bytes())):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))


def ensure_image(client: Any, python: str = "/usr/bin/python3") -> str:
    """The tag of the sandbox image in `client`'s engine, importing it first if missing."""
    import docker.errors

    p = plan(python)
    tag = image_tag(p)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    write_rootfs(p, buf)
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version)
    client.images.get(tag)  # raises if the import did not produce it
    return tag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default="/usr/bin/python3", help="system interpreter to copy")
    ap.add_argument("--tar", help="only write the root file system to this tar file")
    args = ap.parse_args(argv)
    if args.tar:
        write_rootfs(plan(args.python), args.tar)
        print(args.tar)
        return 0
    import docker

    print(ensure_image(docker.from_env(), args.python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
