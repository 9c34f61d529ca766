import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config';

const noFile = (): string => {
  throw Object.assign(new Error('missing'), { code: 'ENOENT' });
};

test('defaults apply when neither file, environment nor flags set anything', () => {
  const { config } = loadConfig({}, {}, noFile);
  assert.equal(config.stateDir, '/var/lib/pyreach-agent');
  assert.equal(config.policy.allowRoot, false);
  assert.equal(config.policy.allowCustomCode, true);
  assert.deepEqual(config.policy.allowedUsers, ['*']);
  assert.deepEqual(config.reconnect, { minMs: 500, maxMs: 30_000 });
});

test('flags beat environment and environment beats the file; labels merge by key', () => {
  const file = JSON.stringify({
    server: 'https://file.example',
    labels: { env: 'prod', team: 'a' },
    policy: { allowRoot: true },
    reconnect: { minMs: 1000 },
  });
  const { config, sources } = loadConfig(
    { server: 'https://flag.example', labels: ['team=b'] },
    {
      PYREACH_AGENT_SERVER: 'https://env.example',
      PYREACH_AGENT_LABELS: 'zone=eu',
      PYREACH_AGENT_ALLOW_ROOT: 'false',
      PYREACH_AGENT_RECONNECT_MAX_MS: '5000',
    },
    () => file,
  );
  assert.equal(config.server, 'https://flag.example');
  assert.deepEqual(config.labels, { env: 'prod', team: 'b', zone: 'eu' });
  assert.equal(config.policy.allowRoot, false);
  assert.deepEqual(config.reconnect, { minMs: 1000, maxMs: 5000 });
  assert.equal(sources['policy.allowRoot'], 'environment variable PYREACH_AGENT_ALLOW_ROOT');
  assert.equal(sources.server, '--server');
});

test('an invalid value names the setting and the file it came from', () => {
  assert.throws(
    () => loadConfig({ config: '/etc/x.json' }, {}, () => JSON.stringify({ scanIntervalSeconds: -5 })),
    (e: Error) =>
      e instanceof ConfigError && /scanIntervalSeconds \(--config \/etc\/x\.json\)/.test(e.message),
  );
});

test('an invalid environment value names the variable', () => {
  assert.throws(
    () => loadConfig({}, { PYREACH_AGENT_ALLOW_CUSTOM_CODE: 'maybe' }, noFile),
    (e: Error) =>
      /policy\.allowCustomCode \(environment variable PYREACH_AGENT_ALLOW_CUSTOM_CODE\)/.test(e.message),
  );
  assert.throws(
    () => loadConfig({}, { PYREACH_AGENT_HEARTBEAT_SECONDS: 'soon' }, noFile),
    /heartbeatSeconds \(environment variable PYREACH_AGENT_HEARTBEAT_SECONDS\): "soon" is not a number/,
  );
  assert.throws(
    () => loadConfig({}, { PYREACH_AGENT_SERVER: 'not a url' }, noFile),
    /server \(environment variable PYREACH_AGENT_SERVER\)/,
  );
});

test('unknown settings in the file are refused by name', () => {
  assert.throws(
    () => loadConfig({}, {}, () => JSON.stringify({ policy: { allowRooot: true } })),
    /policy: unknown setting\(s\) "allowRooot"/,
  );
});

test('a reconnect ceiling below the floor is refused', () => {
  assert.throws(
    () =>
      loadConfig(
        {},
        { PYREACH_AGENT_RECONNECT_MIN_MS: '2000', PYREACH_AGENT_RECONNECT_MAX_MS: '1000' },
        noFile,
      ),
    /reconnect\.maxMs \(environment variable PYREACH_AGENT_RECONNECT_MAX_MS\): must be >= reconnect\.minMs/,
  );
});

test('a missing default file is fine but a missing named file is an error', () => {
  assert.doesNotThrow(() => loadConfig({}, {}, noFile));
  assert.throws(
    () => loadConfig({ config: '/nope.json' }, {}, noFile),
    /configuration file \/nope\.json: cannot read \(ENOENT\)/,
  );
  assert.throws(() => loadConfig({}, {}, () => '{ nope'), /not valid JSON/);
});

test('labels that are not key=value or break the label rules are refused', () => {
  assert.throws(
    () => loadConfig({ labels: ['envprod'] }, {}, noFile),
    /labels \(--label\): "envprod" is not key=value/,
  );
  assert.throws(() => loadConfig({ labels: ['Env=prod'] }, {}, noFile), /labels\.Env|labels/);
});

test('allowed users from the environment accept names and uids', () => {
  const { config } = loadConfig({}, { PYREACH_AGENT_ALLOWED_USERS: 'www-data, 1001' }, noFile);
  assert.deepEqual(config.policy.allowedUsers, ['www-data', 1001]);
});

test('inspection has its own policy section: opted-out targets off by default, users and root as exec unless set', () => {
  const { config } = loadConfig({}, {}, noFile);
  assert.deepEqual(config.policy.inspect, { allowOptedOut: false });
  assert.deepEqual(config.inspection, {
    readTimeoutSeconds: 5,
    deadlineSeconds: 20,
    maxFrames: 512,
    maxReadBytes: 64 * 1024 * 1024,
    maxConcurrent: 2,
  });
  const file = JSON.stringify({ policy: { inspect: { allowedUsers: ['www-data'], allowRoot: true } } });
  const fromFile = loadConfig({}, { PYREACH_AGENT_INSPECT_ALLOW_OPTED_OUT: 'yes' }, () => file).config;
  assert.deepEqual(fromFile.policy.inspect, {
    allowedUsers: ['www-data'],
    allowRoot: true,
    allowOptedOut: true,
  });
  const env = loadConfig(
    {},
    {
      PYREACH_AGENT_INSPECT_ALLOWED_USERS: 'app,1002',
      PYREACH_AGENT_INSPECT_ALLOW_ROOT: 'false',
      PYREACH_AGENT_INSPECT_DEADLINE_SECONDS: '9',
    },
    noFile,
  ).config;
  assert.deepEqual(env.policy.inspect, {
    allowedUsers: ['app', 1002],
    allowRoot: false,
    allowOptedOut: false,
  });
  assert.equal(env.inspection.deadlineSeconds, 9);
});

test('an inspection deadline that leaves the reader no time, or an unknown inspection setting, is refused', () => {
  assert.throws(
    () =>
      loadConfig({}, {}, () =>
        JSON.stringify({ inspection: { readTimeoutSeconds: 10, deadlineSeconds: 5 } }),
      ),
    /inspection\.deadlineSeconds \(.*\): must be more than inspection\.readTimeoutSeconds \(10\)/,
  );
  assert.throws(
    () => loadConfig({}, {}, () => JSON.stringify({ policy: { inspect: { allowEverything: true } } })),
    /policy\.inspect: unknown setting\(s\) "allowEverything"/,
  );
});
