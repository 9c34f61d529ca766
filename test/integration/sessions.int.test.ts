/**
 * People and sessions against the real server process on PGlite and PostgreSQL: sign-out and disabling close
 * the /ui socket at once, temporary passwords must be changed, self-rename is off, and failed sign-ins,
 * sign-outs and denied actions are in the audit trail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io, type Socket } from 'socket.io-client';
import { ApiClient } from '../support/api';
import { eventually } from '../support/eventually';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';

function uiSocket(baseUrl: string, cookie: string): Promise<Socket> {
  const s = io(`${baseUrl}/ui`, { transports: ['websocket'], extraHeaders: { cookie }, reconnection: false });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

const disconnected = (s: Socket) =>
  new Promise<string>((resolve) => (s.connected ? s.once('disconnect', resolve) : resolve('already')));

async function actions(admin: ApiClient): Promise<{ action: string; data: Record<string, unknown> }[]> {
  const r = await admin.ok(
    admin.get<{ events: { action: string; data: Record<string, unknown> }[] }>('/api/audit?limit=500'),
  );
  return r.events;
}

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`people and sessions (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient;
    const ids: Record<string, string> = {};

    before(async () => {
      cp = await startControlPlane(kind);
      admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
      const list = await admin.ok(admin.get<{ users: { id: string; email: string }[] }>('/api/users'));
      for (const u of list.users) ids[u.email] = u.id;
    });
    after(async () => {
      await cp?.cleanup();
    });

    it('closes the /ui socket at sign-out and audits the sign-out', async () => {
      const op = await ApiClient.signIn(cp.baseUrl, USERS.operator);
      const socket = await uiSocket(cp.baseUrl, op.cookie!);
      const closed = disconnected(socket);
      const out = await op.post('/api/auth/sign-out', {});
      assert.equal(out.status, 200, JSON.stringify(out.body));
      assert.equal(await closed, 'io server disconnect');
      assert.ok((await actions(admin)).some((e) => e.action === 'auth.sign_out'));
    });

    it('disables a user: sessions revoked, socket closed at once, sign-in refused and audited', async () => {
      const op2 = await ApiClient.signIn(cp.baseUrl, USERS.operator2);
      const socket = await uiSocket(cp.baseUrl, op2.cookie!);
      const closed = disconnected(socket);
      const r = await admin.post(`/api/users/${ids[USERS.operator2]}/disable`, {
        disabled: true,
        reason: 'left the team',
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(await closed, 'io server disconnect');
      assert.equal((await op2.get('/api/me')).status, 401);
      const again = await new ApiClient(cp.baseUrl).signIn(USERS.operator2, 'correct-horse-battery-staple');
      assert.ok(again.status >= 400, `disabled sign-in answered ${again.status}`);
      const events = await actions(admin);
      assert.ok(events.some((e) => e.action === 'user.disable'));
      assert.ok(events.some((e) => e.action === 'auth.sign_in_failed' && e.data.email === USERS.operator2));
      const self = await admin.post(`/api/users/${ids[USERS.admin]}/disable`, {
        disabled: true,
        reason: 'oops',
      });
      assert.equal(self.status, 409);
    });

    it('a temporary password must be changed before anything else works', async () => {
      const temp = 'temporary-password-42';
      const set = await admin.post(`/api/users/${ids[USERS.viewer]}/password`, { password: temp });
      assert.equal(set.status, 200, JSON.stringify(set.body));
      const viewer = await ApiClient.signIn(cp.baseUrl, USERS.viewer, temp);
      const me = await viewer.ok(viewer.get<{ mustChangePassword: boolean }>('/api/me'));
      assert.equal(me.mustChangePassword, true);
      const blocked = await viewer.get('/api/requests');
      assert.equal(blocked.status, 403);
      assert.equal(!blocked.body.ok && blocked.body.error.code, 'PASSWORD_CHANGE_REQUIRED');
      const changed = await viewer.post('/api/auth/change-password', {
        currentPassword: temp,
        newPassword: 'my-own-new-password-1',
      });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      const fresh = await ApiClient.signIn(cp.baseUrl, USERS.viewer, 'my-own-new-password-1');
      assert.equal((await fresh.get('/api/requests')).status, 200);
      const events = await actions(admin);
      assert.ok(events.some((e) => e.action === 'user.password.temporary'));
      assert.ok(events.some((e) => e.action === 'user.password.changed'));
      assert.ok(!JSON.stringify(events).includes(temp), 'the temporary password is never audited');
    });

    it('refuses self-rename through the auth library and audits denied actions', async () => {
      const approver = await ApiClient.signIn(cp.baseUrl, USERS.approver);
      const rename = await approver.post('/api/auth/update-user', { name: 'The Admin' });
      assert.ok(rename.status === 404 || rename.status === 403, `update-user answered ${rename.status}`);
      const list = await admin.ok(admin.get<{ users: { email: string; name: string }[] }>('/api/users'));
      assert.equal(list.users.find((u) => u.email === USERS.approver)?.name, 'approver');
      const denied = await approver.post('/api/join-tokens', {});
      assert.equal(denied.status, 403);
      await eventually('the denied join-token call is audited', async () =>
        (await actions(admin)).some((e) => e.action === 'access.denied' && e.data.code === 'FORBIDDEN'),
      );
    });
  });
}
