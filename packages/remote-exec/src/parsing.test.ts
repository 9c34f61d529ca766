import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { pythonPath } from '../../../test/support/python';
import { fileReader, readElfRuntimeInfo, runtimeAddress, type ElfRuntimeInfo } from './elf';
import { checkHeader, COOKIE, decodeVersion, formatVersion, parseDebugOffsets } from './offsets';
import { candidateImages, parseMaps, parsePasswd, parseStat, parseStatus } from './procfs';
import { remoteDebugChoice } from './runtime';

describe('parsing /proc files', () => {
  it('parses maps lines including paths with spaces and deleted files', () => {
    const maps = parseMaps(
      [
        '00400000-00401000 r--p 00000000 08:01 1234   /usr/bin/python3.14',
        '7f00aa000000-7f00aa100000 rw-p 00010000 00:2a 99 /opt/my app/libpython3.14.so.1.0 (deleted)',
        '7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]',
        '7ffd3000-7ffd4000 rw-p 00000000 00:00 0',
      ].join('\n'),
    );
    assert.equal(maps.length, 4);
    assert.equal(maps[0]!.start, 0x400000n);
    assert.equal(maps[0]!.path, '/usr/bin/python3.14');
    assert.equal(maps[1]!.path, '/opt/my app/libpython3.14.so.1.0');
    assert.equal(maps[1]!.deleted, true);
    assert.equal(maps[1]!.offset, 0x10000n);
    assert.equal(maps[2]!.path, '[stack]');
    assert.equal(maps[3]!.path, '');
  });

  it('keeps one offset-0 mapping per python-named file plus the executable as runtime candidates', () => {
    const maps = parseMaps(
      [
        '00400000-00401000 r--p 00000000 08:01 1 /usr/bin/myapp',
        '00401000-00402000 r-xp 00001000 08:01 1 /usr/bin/myapp',
        '7f0000000000-7f0000001000 r--p 00000000 08:01 2 /usr/lib/libpython3.14.so.1.0',
        '7f0000001000-7f0000002000 r-xp 00001000 08:01 2 /usr/lib/libpython3.14.so.1.0',
        '7f0000100000-7f0000101000 r--p 00000000 08:01 3 /usr/lib/libc.so.6',
      ].join('\n'),
    );
    const c = candidateImages(maps, '/usr/bin/myapp');
    assert.deepEqual(
      c.map((m) => m.path),
      ['/usr/lib/libpython3.14.so.1.0', '/usr/bin/myapp'],
    );
  });

  it('parses stat with a command name containing spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = 'S';
    fields[1] = '77';
    fields[19] = '123456';
    const s = parseStat(`4242 (my (weird) name) ${fields.join(' ')}`);
    assert.equal(s.pid, 4242);
    assert.equal(s.comm, 'my (weird) name');
    assert.equal(s.ppid, 77);
    assert.equal(s.startTime, '123456');
  });

  it("reads the target's own-namespace pid from NSpid and the real uid", () => {
    const st = parseStatus(
      'Name:\tpython3.14\nPPid:\t10\nUid:\t999\t999\t999\t999\nGid:\t995\t995\t995\t995\nNSpid:\t5000\t1\n',
    );
    assert.deepEqual(st.nsPids, [5000, 1]);
    assert.equal(st.uid, 999);
    assert.equal(st.gid, 995);
    assert.equal(st.ppid, 10);
  });

  it('maps uids to the first user name in passwd', () => {
    const t = parsePasswd('root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# junk\n');
    assert.equal(t.get(0), 'root');
    assert.equal(t.get(1000), 'app');
  });

  it('reads the real stat of this process', () => {
    const s = parseStat(readFileSync('/proc/self/stat', 'utf8'));
    assert.equal(s.pid, process.pid);
    assert.match(s.startTime, /^\d+$/);
  });
});

describe('ELF and _Py_DebugOffsets on the real CPython 3.14 binary', () => {
  let binary: string;
  let info: ElfRuntimeInfo;
  before(() => {
    // The unpatched interpreter of the provisioned tree (same bytes as Debian ships).
    binary = pythonPath().replace(/python3\.14-host$/, 'python3.14');
    const r = fileReader(binary);
    try {
      info = readElfRuntimeInfo(r.readAt)!;
    } finally {
      r.close();
    }
  });

  it('finds the .PyRuntime section and the load base of the first PT_LOAD', () => {
    assert.ok(info);
    assert.equal(info.via, 'section');
    assert.equal(info.hasInterp, true);
    // Debian's python3.14 is a non-PIE executable linked at 0x400000.
    if (info.type === 2) {
      assert.equal(info.loadBase, 0x400000n);
      assert.equal(runtimeAddress(info, 0x400000n), info.runtimeVaddr);
    }
  });

  it('validates the cookie and decodes version, build and the fields the writer uses from the file bytes', () => {
    // Locate the section's file offset: for a non-PIE binary, vaddr - loadBase is the file offset of
    // data only if segments are file-aligned; read via the section header instead.
    const fd = openSync(binary, 'r');
    try {
      const eh = Buffer.alloc(64);
      readSync(fd, eh, 0, 64, 0);
      const shoff = Number(eh.readBigUInt64LE(40));
      const shnum = eh.readUInt16LE(60);
      const sh = Buffer.alloc(64 * shnum);
      readSync(fd, sh, 0, sh.length, shoff);
      let fileOff = -1;
      for (let i = 0; i < shnum; i++)
        if (sh.readBigUInt64LE(i * 64 + 16) === info.runtimeVaddr)
          fileOff = Number(sh.readBigUInt64LE(i * 64 + 24));
      assert.ok(fileOff > 0);
      const block = Buffer.alloc(760);
      readSync(fd, block, 0, 760, fileOff);
      assert.ok(block.subarray(0, 8).equals(COOKIE));
      const check = checkHeader(block);
      assert.equal(check.ok, true);
      if (!check.ok) return;
      assert.equal(check.version.major, 3);
      assert.equal(check.version.minor, 14);
      assert.equal(check.version.level, 0xf);
      assert.equal(check.freeThreaded, false);
      const o = parseDebugOffsets(block, check);
      assert.equal(o.debuggerScriptPathSize, 512);
      assert.equal(o.debuggerPendingCall, 0n);
      assert.equal(o.debuggerScriptPath, 4n);
      assert.equal(o.evalBreaker, 0x18n);
      assert.equal(o.tstateNext, 8n);
      assert.ok(o.remoteDebuggingEnabled > 0n);
    } finally {
      closeSync(fd);
    }
  });

  it('also finds _PyRuntime through .dynsym at the same address as the section', () => {
    // Hide the section name so the reader must fall back to the symbol table.
    const data = readFileSync(binary);
    const patched = Buffer.from(data);
    const at = patched.indexOf(Buffer.from('.PyRuntime\0'));
    assert.ok(at > 0);
    patched.write('.XyRuntime', at, 'latin1');
    const viaSym = readElfRuntimeInfo((pos, len) => patched.subarray(pos, pos + len))!;
    assert.ok(viaSym);
    assert.notEqual(viaSym.via, 'section');
    assert.equal(viaSym.runtimeVaddr, info.runtimeVaddr);
  });
});

describe('version gating', () => {
  const header = (hex: number): Buffer => {
    const b = Buffer.alloc(24);
    COOKIE.copy(b);
    b.writeBigUInt64LE(BigInt(hex), 8);
    return b;
  };

  it('accepts final 3.14 and 3.15 releases', () => {
    assert.equal(checkHeader(header(0x030e0af0)).ok, true);
    assert.equal(checkHeader(header(0x030f02f0)).ok, true);
  });

  it('refuses pre-releases and unknown minor versions with a clear message', () => {
    const pre = checkHeader(header(0x030e00b2));
    assert.equal(pre.ok, false);
    if (!pre.ok) {
      assert.equal(pre.reason, 'unsupported');
      assert.match(pre.message, /3\.14\.0b2.*pre-release/);
    }
    const future = checkHeader(header(0x031000f0));
    assert.equal(future.ok, false);
    if (!future.ok) assert.match(future.message, /3\.16\.0: no offsets layout.*3\.14, 3\.15/);
    const noCookie = checkHeader(Buffer.alloc(24));
    assert.equal(noCookie.ok, false);
    if (!noCookie.ok) assert.equal(noCookie.reason, 'bad_cookie');
  });

  it('formats PY_VERSION_HEX values', () => {
    assert.equal(formatVersion(decodeVersion(0x030e0af0)), '3.14.10');
    assert.equal(formatVersion(decodeVersion(0x030f00c1)), '3.15.0rc1');
  });
});

describe('the remote_debug choice read from memory', () => {
  it('is unknown while the interpreter has no thread state yet (its config is not copied in), read after', () => {
    // The interpreter is linked into the runtime before its config is copied: 0 there means "not set yet".
    assert.equal(remoteDebugChoice({ remoteDebugEnabled: false, threads: [] }), null);
    assert.equal(remoteDebugChoice({ remoteDebugEnabled: false, threads: [{ tstate: 1n, tid: 7 }] }), false);
    assert.equal(remoteDebugChoice({ remoteDebugEnabled: true, threads: [{ tstate: 1n, tid: 7 }] }), true);
  });
});
