import assert from 'node:assert/strict';
import { test } from 'node:test';
import { middleEllipsis, plural, processName, scriptOf } from './process';

const proc = (cmdline: string[], extra: Partial<Parameters<typeof processName>[0]> = {}) => ({
  cmdline,
  exe: '/usr/bin/python3.14',
  container: null,
  inContainer: false,
  pid: 42,
  ...extra,
});

test('a script is named by its last two path segments, past the interpreter and its options', () => {
  const py = '/root/.cache/pyreach/cpython-3.14/root/usr/bin/python3.14-host';
  assert.equal(scriptOf([py, '-u', '-X', 'dev', '/work/demo/service.py', '--port', '1']), 'demo/service.py');
  assert.equal(scriptOf(['python3', 'app.py']), 'app.py');
  assert.equal(scriptOf(['/usr/bin/python3.14', '-W', 'error', '--', '/srv/x/y/z.py']), 'y/z.py');
});

test('python -m pkg is named pkg, -c is named as such, a console script by its argv[0]', () => {
  assert.equal(scriptOf(['python3.14', '-m', 'http.server', '8000']), 'http.server');
  assert.equal(scriptOf(['python3.14', '-mpkg']), 'pkg');
  assert.equal(scriptOf(['python3.14', '-c', 'import time; time.sleep(9)']), 'python -c');
  assert.equal(scriptOf(['/usr/local/bin/gunicorn', 'app:wsgi']), 'gunicorn');
  assert.equal(scriptOf(['python3.14']), null);
  assert.equal(scriptOf([]), null);
});

test('with nothing in argv the container, then the executable names the process', () => {
  assert.equal(
    processName(proc(['python3.14'], { inContainer: true, container: 'docker:0123abcd' })),
    'docker:0123abcd',
  );
  assert.equal(processName(proc([])), 'python3.14');
  assert.equal(
    processName(proc(['python3.14', 'demo/service.py'], { inContainer: true, container: 'c' })),
    'demo/service.py',
  );
});

test('long command lines are cut in the middle, keeping both ends', () => {
  const cmd =
    '/root/.cache/pyreach/cpython-3.14/root/usr/bin/python3.14-host /work/demo/service.py --port 8080';
  const short = middleEllipsis(cmd, 60);
  assert.equal([...short].length, 60);
  assert.ok(short.startsWith('/root/.cache/'));
  assert.ok(short.endsWith('service.py --port 8080'));
  assert.equal(middleEllipsis('short', 60), 'short');
});

test('counts are pluralised', () => {
  assert.equal(plural(1, 'host'), '1 host');
  assert.equal(plural(2, 'host'), '2 hosts');
  assert.equal(plural(0, 'process', 'processes'), '0 processes');
  assert.equal(plural(5000, 'process', 'processes'), '5,000 processes');
});
