"""
A hostile target's user, for tests: runs as the target's uid (65534) next to the target and attacks every
Pyreach staging directory that appears in the watched base directories while runs go on.

Usage: python3.14 attacker.py CONFIG_JSON
CONFIG: {"bases": [dir, ...], "mode": "poll" | "inotify", "attacks": [name, ...], "canary": path,
         "canaryDir": path, "log": path, "names": [file names to plant], "growBytes": n}

Every attempt is one JSON line in the log: {"dir", "attack", "name", "ok", "error"}; "ready" is printed once
the watches are in place. It stops when its parent (the test) kills it.

Attacks:
  symlink    plant NAME -> canary for every NAME (before and after the engine creates it)
  fifo       plant a FIFO at NAME
  hardlink   hard-link the canary at NAME (blocked by fs.protected_hardlinks=1 unless the canary is ours)
  swap-dir   rename the staging directory away and put a symlink to canaryDir in its place
  swap-out   replace out.txt / result.json / picked.json by a symlink to the canary (rename or unlink first)
  link-out   hard-link the run's own output files elsewhere (their link count becomes 2)
  grow-out   append growBytes to out.txt (a sparse/oversized output)
"""
import ctypes
import ctypes.util
import errno
import json
import os
import re
import select
import struct
import sys
import time

cfg = json.loads(sys.argv[1])
bases = cfg["bases"]
attacks = cfg["attacks"]
canary = cfg["canary"]
canary_dir = cfg.get("canaryDir") or os.path.dirname(canary)
names = cfg.get("names") or [
    "run.py", "code.py", "params.json", "job.json", "ctl", "cancel",
    "picked.json", "out.txt", "result.json", "picked.json.tmp", "result.json.tmp", "out",
]
grow = int(cfg.get("growBytes") or 8 * 1024 * 1024)
log_f = open(cfg["log"], "a", buffering=1)
PAT = re.compile(r"^pyreach-[0-9a-f]{16}$")


def log(d, attack, name, ok, err=None):
    log_f.write(json.dumps({"dir": d, "attack": attack, "name": name, "ok": ok, "error": err}) + "\n")


def attempt(d, attack, name, fn):
    try:
        fn()
        log(d, attack, name, True)
        return True
    except OSError as e:
        log(d, attack, name, False, errno.errorcode.get(e.errno, str(e.errno)))
        return False


def plant(d, attack):
    for n in names:
        p = os.path.join(d, n)
        if attack == "symlink":
            attempt(d, attack, n, lambda: os.symlink(canary, p))
        elif attack == "fifo":
            attempt(d, attack, n, lambda: os.mkfifo(p, 0o666))
        elif attack == "hardlink":
            attempt(d, attack, n, lambda: os.link(canary, p))


def swap_out(d):
    for n in ("out.txt", "result.json", "picked.json"):
        p = os.path.join(d, n)

        def go():
            try:
                os.rename(p, p + ".gone")
            except FileNotFoundError:
                pass
            os.symlink(canary, p)

        attempt(d, "swap-out", n, go)


def link_out(d):
    for n in ("out.txt", "result.json", "picked.json"):
        p = os.path.join(d, n)
        attempt(d, "link-out", n, lambda: os.link(p, os.path.join(os.path.dirname(d), "hl-%s-%s" % (os.path.basename(d), n))))


def grow_out(d):
    def go():
        with open(os.path.join(d, "out.txt"), "ab") as f:
            f.write(b"A" * grow)

    attempt(d, "grow-out", "out.txt", go)


def swap_dir(d):
    def go():
        os.rename(d, d + ".moved")
        os.symlink(canary_dir, d)

    attempt(d, "swap-dir", os.path.basename(d), go)


seen = set()


def attack_dir(d, early):
    # early: the directory just appeared (files may not exist yet) — plant before the engine writes.
    for a in attacks:
        if a in ("symlink", "fifo", "hardlink"):
            plant(d, a)
    if early:
        return
    for a in attacks:
        if a == "swap-out":
            swap_out(d)
        elif a == "link-out":
            link_out(d)
        elif a == "grow-out":
            grow_out(d)
        elif a == "swap-dir":
            swap_dir(d)


def scan():
    found = []
    for b in bases:
        try:
            entries = os.listdir(b)
        except OSError:
            continue
        for n in entries:
            if PAT.match(n) and os.path.join(b, n) not in seen:
                found.append(os.path.join(b, n))
    return found


def poll_loop():
    pending = {}
    print("ready", flush=True)
    while True:
        for d in scan():
            seen.add(d)
            attack_dir(d, True)
            pending[d] = time.monotonic()
        # second pass once the engine had time to create its files (after pickup, outputs exist)
        for d, t in list(pending.items()):
            if time.monotonic() - t > 0.05 and os.path.exists(os.path.join(d, "picked.json")) or time.monotonic() - t > 0.3:
                del pending[d]
                attack_dir(d, False)
        time.sleep(0.0005)


IN_CREATE = 0x100
IN_MOVED_TO = 0x80
IN_CLOSE_WRITE = 0x8
IN_MODIFY = 0x2


def inotify_loop():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    wd_path = {}
    for b in bases:
        wd = libc.inotify_add_watch(fd, b.encode(), IN_CREATE | IN_MOVED_TO)
        if wd >= 0:
            wd_path[wd] = b
    print("ready", flush=True)
    later = {}
    while True:
        r, _, _ = select.select([fd], [], [], 0.02)
        if r:
            buf = os.read(fd, 65536)
            i = 0
            while i < len(buf):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + ln].rstrip(b"\0").decode("utf-8", "surrogateescape")
                i += 16 + ln
                parent = wd_path.get(wd)
                if parent is None:
                    continue
                p = os.path.join(parent, name)
                if parent in bases and PAT.match(name) and p not in seen:
                    seen.add(p)
                    attack_dir(p, True)
                    w2 = libc.inotify_add_watch(fd, p.encode(), IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY)
                    if w2 >= 0:
                        wd_path[w2] = p
                    later[p] = time.monotonic()
                elif parent in later and name == "picked.json":
                    del later[parent]
                    attack_dir(parent, False)
        for d, t in list(later.items()):
            if time.monotonic() - t > 0.3:
                del later[d]
                attack_dir(d, False)


# Only directories that appear from now on are this test's to attack.
seen.update(scan())
if cfg.get("mode") == "inotify":
    inotify_loop()
else:
    poll_loop()
