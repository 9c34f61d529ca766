/**
 * /ui events through a real socket.io server and client: a payload that matches its protocol schema reaches
 * the handler parsed; one that does not is reported and never handled.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Server } from 'socket.io';
import { io as connect, type Socket } from 'socket.io-client';
import { onUiEvent } from './live';

describe('/ui events in the browser client', () => {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  const ui = io.of('/ui');
  let client: Socket;

  before(async () => {
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    client = connect(`http://127.0.0.1:${(http.address() as AddressInfo).port}/ui`, {
      transports: ['websocket'],
    });
    await new Promise<void>((r) => client.once('connect', () => r()));
  });
  after(async () => {
    client.close();
    await new Promise<void>((r) => io.close(() => r()));
  });

  const next = <T>(register: (resolve: (v: T) => void) => void) =>
    new Promise<T>((resolve) => register(resolve));

  it('hands a valid event to the handler, parsed', async () => {
    const got = next<unknown>((resolve) => {
      const off = onUiEvent(client, 'request:changed', (msg) => {
        off();
        resolve(msg);
      });
    });
    ui.emit('request:changed', { requestId: 'req_1', state: 'approved' });
    assert.deepEqual(await got, { requestId: 'req_1', state: 'approved' });
  });

  it('reports an event that does not match its schema and never handles it', async () => {
    const handled: unknown[] = [];
    const invalid = next<[string, string]>((resolve) => {
      const off = onUiEvent(
        client,
        'execution:update',
        (msg) => handled.push(msg),
        (event, issues) => {
          off();
          resolve([event, issues]);
        },
      );
    });
    ui.emit('execution:update', { requestId: 'req_1', executionId: 'ex_1', state: 'exploded' });
    const [event, issues] = await invalid;
    assert.equal(event, 'execution:update');
    assert.match(issues, /state/);
    assert.deepEqual(handled, []);
  });

  it('stops handling once unsubscribed', async () => {
    const handled: unknown[] = [];
    const off = onUiEvent(client, 'fleet:changed', (msg) => handled.push(msg));
    off();
    // A later subscriber proves the event arrived.
    const arrived = next<unknown>((resolve) => {
      const o = onUiEvent(client, 'fleet:changed', (m) => {
        o();
        resolve(m);
      });
    });
    ui.emit('fleet:changed', { hostId: null });
    await arrived;
    assert.deepEqual(handled, []);
  });
});
