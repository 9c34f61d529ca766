import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPrivateAddress, webhookSink, WebhookRefused } from './audit-checkpoint';

describe('the audit webhook sink refuses non-public destinations, and only those', () => {
  it('public IPv4 and IPv6 addresses are public (a /96 IPv4-mapped block once made every IPv4 "private")', () => {
    for (const a of ['93.184.216.34', '8.8.8.8', '1.1.1.1', '2606:4700:4700::1111'])
      assert.equal(isPrivateAddress(a), false, a);
  });

  it('loopback, private, link-local (metadata), CGNAT, mapped and NAT64 forms of them are not', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '64:ff9b::a9fe:a9fe',
      'not-an-ip',
    ])
      assert.equal(isPrivateAddress(a), true, a);
  });

  it('a sink at a public literal is accepted; at a private one it is refused naming the allow-list', () => {
    assert.doesNotThrow(() => webhookSink('https://93.184.216.34/checkpoints', []));
    assert.throws(
      () => webhookSink('https://169.254.169.254/latest', []),
      (e: unknown) => e instanceof WebhookRefused && /PYREACH_AUDIT_SINK_WEBHOOK_ALLOW/.test(e.message),
    );
  });
});
