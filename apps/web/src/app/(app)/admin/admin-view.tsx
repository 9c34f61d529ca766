'use client';
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import { BookOpenIcon, KeyRoundIcon, ShieldIcon, UsersIcon, ServerIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { LabelList, OnlineBadge } from '../../../components/status';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../components/ui/card';
import { CodeBlock } from '../../../components/ui/code-block';
import { CopyButton } from '../../../components/ui/copy-button';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogFooter,
  DialogHeader,
  DialogTitle,
} from '../../../components/ui/dialog';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { Switch } from '../../../components/ui/checkbox';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../components/ui/tabs';
import { api, errorMessage, useApi } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { useUiEvent } from '../../../lib/client/socket';
import type { AgentRow, Policy, UserRow } from '../../../lib/client/types';
import { formatTime, relativeTime } from '../../../lib/client/utils';

const ROLES = ['viewer', 'operator', 'approver', 'admin'];

function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function UsersTab() {
  const me = useUser();
  const { data, error, loading, reload } = useApi<{ users: UserRow[] }>('/api/users');
  const [form, setForm] = useState({ email: '', name: '', password: '', role: 'viewer' });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  async function create(e: FormEvent) {
    e.preventDefault();
    setMsg(null);
    try {
      await api('/api/users', { method: 'POST', json: form });
      setMsg({ ok: true, text: `Created ${form.email}` });
      setForm({ email: '', name: '', password: '', role: 'viewer' });
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  async function setRole(id: string, role: string) {
    setMsg(null);
    try {
      await api(`/api/users/${id}`, { method: 'PATCH', json: { role } });
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  return (
    <div className="grid gap-4">
      <Card>
        <CardHeader>
          <CardTitle>Add a user</CardTitle>
        </CardHeader>
        <CardContent>
          <form onSubmit={create} className="grid gap-3 sm:grid-cols-5">
            <Field id="nu-email" label="Email">
              <Input
                id="nu-email"
                type="email"
                required
                value={form.email}
                onChange={(e) => setForm({ ...form, email: e.target.value })}
              />
            </Field>
            <Field id="nu-name" label="Name">
              <Input
                id="nu-name"
                required
                value={form.name}
                onChange={(e) => setForm({ ...form, name: e.target.value })}
              />
            </Field>
            <Field id="nu-password" label="Password" hint="12+ characters">
              <Input
                id="nu-password"
                type="password"
                minLength={12}
                required
                autoComplete="new-password"
                value={form.password}
                onChange={(e) => setForm({ ...form, password: e.target.value })}
              />
            </Field>
            <Field id="nu-role" label="Role">
              <NativeSelect
                id="nu-role"
                value={form.role}
                onChange={(e) => setForm({ ...form, role: e.target.value })}
              >
                {ROLES.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </NativeSelect>
            </Field>
            <div className="flex items-start pt-5">
              <Button type="submit">Create user</Button>
            </div>
          </form>
          {msg ? (
            <Alert className="mt-3" variant={msg.ok ? 'success' : 'destructive'} title={msg.text} />
          ) : null}
        </CardContent>
      </Card>
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : (
        <Card>
          <Table aria-label="Users">
            <THead>
              <TR>
                <TH>Name</TH>
                <TH>Email</TH>
                <TH>Role</TH>
                <TH>Since</TH>
              </TR>
            </THead>
            <TBody>
              {(data?.users ?? []).map((u) => (
                <TR key={u.id}>
                  <TD className="font-medium">
                    {u.name} {u.id === me.id ? <Badge variant="outline">you</Badge> : null}{' '}
                    {u.banned ? <Badge variant="destructive">banned</Badge> : null}
                  </TD>
                  <TD>{u.email}</TD>
                  <TD>
                    <NativeSelect
                      aria-label={`Role of ${u.email}`}
                      className="h-8 w-36"
                      value={u.role}
                      disabled={u.id === me.id}
                      onChange={(e) => void setRole(u.id, e.target.value)}
                    >
                      {ROLES.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </NativeSelect>
                  </TD>
                  <TD className="text-muted-foreground">{formatTime(u.createdAt)}</TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
    </div>
  );
}

function AgentsTab() {
  const { data, error, loading, reload } = useApi<{ agents: AgentRow[] }>('/api/agents?includeRevoked=true');
  useUiEvent('fleet:changed', () => reload());
  const [labels, setLabels] = useState('');
  const [ttl, setTtl] = useState(60);
  const [note, setNote] = useState('');
  const [token, setToken] = useState<{ token: string; expiresAt: string } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [revoking, setRevoking] = useState<AgentRow | null>(null);
  const [revokeReason, setRevokeReason] = useState('');
  const origin = typeof window !== 'undefined' ? window.location.origin : '';

  async function createToken(e: FormEvent) {
    e.preventDefault();
    setErr(null);
    try {
      const r = await api<{ joinToken: { token: string; expiresAt: string } }>('/api/join-tokens', {
        method: 'POST',
        json: { labels: parseLabels(labels), ttlMinutes: ttl, ...(note.trim() ? { note: note.trim() } : {}) },
      });
      setToken(r.joinToken);
    } catch (error) {
      setErr(error);
    }
  }
  async function revoke(e: FormEvent) {
    e.preventDefault();
    if (!revoking) return;
    try {
      await api(`/api/agents/${revoking.id}/revoke`, {
        method: 'POST',
        json: { reason: revokeReason.trim() || 'revoked from the dashboard' },
      });
      setRevoking(null);
      setRevokeReason('');
      reload();
    } catch (error) {
      setErr(error);
    }
  }
  const command = token ? `pyreach-agent enroll --server ${origin} --token ${token.token}` : '';
  return (
    <div className="grid gap-4">
      <Card>
        <CardHeader>
          <CardTitle>Enrol a host</CardTitle>
          <CardDescription>
            A one-time join token; the agent generates its own key and the token cannot be used twice.
          </CardDescription>
        </CardHeader>
        <CardContent className="grid gap-3">
          <form onSubmit={createToken} className="grid gap-3 sm:grid-cols-[1fr_8rem_1fr_auto]">
            <Field id="jt-labels" label="Labels" hint="key=value, comma-separated">
              <Input
                id="jt-labels"
                className="font-mono"
                value={labels}
                onChange={(e) => setLabels(e.target.value)}
                placeholder="env=prod,team=orders"
              />
            </Field>
            <Field id="jt-ttl" label="Valid (minutes)">
              <Input
                id="jt-ttl"
                type="number"
                min={1}
                max={10080}
                value={ttl}
                onChange={(e) => setTtl(Number(e.target.value) || 60)}
              />
            </Field>
            <Field id="jt-note" label="Note">
              <Input
                id="jt-note"
                value={note}
                onChange={(e) => setNote(e.target.value)}
                placeholder="orders-prod-3 rollout"
              />
            </Field>
            <div className="pt-5">
              <Button type="submit">
                <KeyRoundIcon aria-hidden="true" /> Create join token
              </Button>
            </div>
          </form>
          {token ? (
            <Alert variant="success" title="Run this on the host (shown once)">
              <div className="grid gap-2">
                <CodeBlock testId="enroll-command">{command}</CodeBlock>
                <div className="flex items-center gap-2">
                  <CopyButton text={command} label="Copy command" />
                  <span className="text-xs">expires {formatTime(token.expiresAt)}</span>
                </div>
                <span className="text-xs">
                  Then start it with <code className="font-mono">pyreach-agent run</code>.
                </span>
              </div>
            </Alert>
          ) : null}
          {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
        </CardContent>
      </Card>
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : (data?.agents ?? []).length === 0 ? (
        <EmptyState title="No agents enrolled" icon={<ServerIcon />}>
          Create a join token above and run the command on a host.
        </EmptyState>
      ) : (
        <Card>
          <Table aria-label="Agents">
            <THead>
              <TR>
                <TH>Agent</TH>
                <TH>Status</TH>
                <TH>Version</TH>
                <TH>Labels</TH>
                <TH>Last seen</TH>
                <TH>Enrolled</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {(data?.agents ?? []).map((a) => (
                <TR key={a.id} data-testid="agent-row">
                  <TD>
                    <div className="font-medium">{a.name}</div>
                    <div className="font-mono text-xs text-muted-foreground">{a.id}</div>
                  </TD>
                  <TD>
                    <OnlineBadge status={a.status} revoked={!!a.revokedAt} />
                    {a.revokedReason ? (
                      <div className="text-xs text-muted-foreground">{a.revokedReason}</div>
                    ) : null}
                  </TD>
                  <TD className="font-mono text-xs">{a.version}</TD>
                  <TD>
                    <LabelList labels={a.labels} />
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{relativeTime(a.lastSeenAt)}</TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(a.enrolledAt)}</TD>
                  <TD className="text-right">
                    {!a.revokedAt ? (
                      <Button size="sm" variant="outline" onClick={() => setRevoking(a)}>
                        Revoke
                      </Button>
                    ) : null}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <Dialog open={revoking !== null} onOpenChange={(o) => !o && setRevoking(null)}>
        <DialogContent>
          <form onSubmit={revoke} className="grid gap-4">
            <DialogHeader>
              <DialogTitle>Revoke {revoking?.name}?</DialogTitle>
              <DialogDescription>
                Its connection drops now and it is refused from then on. The host must enrol again with a new
                token.
              </DialogDescription>
            </DialogHeader>
            <Field id="revoke-reason" label="Reason">
              <Input
                id="revoke-reason"
                required
                value={revokeReason}
                onChange={(e) => setRevokeReason(e.target.value)}
                placeholder="host decommissioned"
              />
            </Field>
            <DialogFooter>
              <Button type="button" variant="outline" onClick={() => setRevoking(null)}>
                Keep it
              </Button>
              <Button type="submit" variant="destructive">
                Revoke agent
              </Button>
            </DialogFooter>
          </form>
        </DialogContent>
      </Dialog>
    </div>
  );
}

const EMPTY_POLICY = {
  name: '',
  description: '',
  matchLabels: '',
  priority: 0,
  requiredApprovals: 1,
  approverRoles: ['approver', 'admin'],
  allowCustomCode: false,
  approvalValidMinutes: 60,
};

function PoliciesTab() {
  const { data, error, loading, reload } = useApi<{ policies: Policy[] }>('/api/policies');
  const [editing, setEditing] = useState<{ id: string | null; v: typeof EMPTY_POLICY } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  async function save(e: FormEvent) {
    e.preventDefault();
    if (!editing) return;
    setErr(null);
    const v = editing.v;
    const body = {
      name: v.name,
      description: v.description || null,
      matchLabels: parseLabels(v.matchLabels),
      priority: v.priority,
      requiredApprovals: v.requiredApprovals,
      approverRoles: v.approverRoles,
      allowCustomCode: v.allowCustomCode,
      approvalValidMinutes: v.approvalValidMinutes,
    };
    try {
      if (editing.id) await api(`/api/policies/${editing.id}`, { method: 'PUT', json: body });
      else await api('/api/policies', { method: 'POST', json: body });
      setEditing(null);
      reload();
    } catch (error) {
      setErr(error);
    }
  }
  async function remove(p: Policy) {
    setErr(null);
    try {
      await api(`/api/policies/${p.id}`, { method: 'DELETE' });
      reload();
    } catch (error) {
      setErr(error);
    }
  }
  const v = editing?.v;
  return (
    <div className="grid gap-4">
      <div className="flex justify-end">
        <Button onClick={() => setEditing({ id: null, v: EMPTY_POLICY })}>New policy</Button>
      </div>
      {err && !editing ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : (
        <Card>
          <Table aria-label="Policies">
            <THead>
              <TR>
                <TH>Name</TH>
                <TH>Matches</TH>
                <TH>Priority</TH>
                <TH>Approvals</TH>
                <TH>Approvers</TH>
                <TH>Custom code</TH>
                <TH>Valid</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {(data?.policies ?? []).map((p) => (
                <TR key={p.id}>
                  <TD>
                    <div className="font-medium">{p.name}</div>
                    {p.description ? (
                      <div className="max-w-xs text-xs text-muted-foreground">{p.description}</div>
                    ) : null}
                  </TD>
                  <TD>
                    {Object.keys(p.matchLabels ?? {}).length ? (
                      <LabelList labels={p.matchLabels} />
                    ) : (
                      <span className="text-xs text-muted-foreground">every host</span>
                    )}
                  </TD>
                  <TD className="tabular-nums">{p.priority}</TD>
                  <TD className="tabular-nums">
                    {p.requiredApprovals === 0 ? 'automatic' : p.requiredApprovals}
                  </TD>
                  <TD>{p.approverRoles.join(', ')}</TD>
                  <TD>
                    {p.allowCustomCode ? (
                      <Badge variant="warning">allowed</Badge>
                    ) : (
                      <Badge variant="secondary">library only</Badge>
                    )}
                  </TD>
                  <TD>{p.approvalValidMinutes} min</TD>
                  <TD className="whitespace-nowrap text-right">
                    <Button
                      size="sm"
                      variant="outline"
                      onClick={() =>
                        setEditing({
                          id: p.id,
                          v: {
                            name: p.name,
                            description: p.description ?? '',
                            matchLabels: Object.entries(p.matchLabels ?? {})
                              .map(([k, x]) => `${k}=${x}`)
                              .join(','),
                            priority: p.priority,
                            requiredApprovals: p.requiredApprovals,
                            approverRoles: p.approverRoles,
                            allowCustomCode: p.allowCustomCode,
                            approvalValidMinutes: p.approvalValidMinutes,
                          },
                        })
                      }
                    >
                      Edit
                    </Button>{' '}
                    {p.id !== 'default' ? (
                      <Button size="sm" variant="ghost" onClick={() => void remove(p)}>
                        Delete
                      </Button>
                    ) : null}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <Dialog open={editing !== null} onOpenChange={(o) => !o && setEditing(null)}>
        <DialogContent className="max-w-xl">
          {v && editing ? (
            <form onSubmit={save} className="grid gap-3">
              <DialogHeader>
                <DialogTitle>{editing.id ? `Edit ${v.name}` : 'New policy'}</DialogTitle>
                <DialogDescription>Requests keep the rules they were filed under.</DialogDescription>
              </DialogHeader>
              <div className="grid gap-3 sm:grid-cols-2">
                <Field id="p-name" label="Name">
                  <Input
                    id="p-name"
                    required
                    value={v.name}
                    onChange={(e) => setEditing({ ...editing, v: { ...v, name: e.target.value } })}
                  />
                </Field>
                <Field
                  id="p-labels"
                  label="Host labels"
                  hint="key=value, comma-separated; empty = every host"
                >
                  <Input
                    id="p-labels"
                    className="font-mono"
                    value={v.matchLabels}
                    onChange={(e) => setEditing({ ...editing, v: { ...v, matchLabels: e.target.value } })}
                  />
                </Field>
                <Field id="p-desc" label="Description" className="sm:col-span-2">
                  <Input
                    id="p-desc"
                    value={v.description}
                    onChange={(e) => setEditing({ ...editing, v: { ...v, description: e.target.value } })}
                  />
                </Field>
                <Field id="p-prio" label="Priority">
                  <Input
                    id="p-prio"
                    type="number"
                    value={v.priority}
                    onChange={(e) =>
                      setEditing({ ...editing, v: { ...v, priority: Number(e.target.value) } })
                    }
                  />
                </Field>
                <Field id="p-appr" label="Approvals needed" hint="0 = automatic">
                  <Input
                    id="p-appr"
                    type="number"
                    min={0}
                    max={10}
                    value={v.requiredApprovals}
                    onChange={(e) =>
                      setEditing({ ...editing, v: { ...v, requiredApprovals: Number(e.target.value) } })
                    }
                  />
                </Field>
                <Field id="p-valid" label="Approval valid (minutes)">
                  <Input
                    id="p-valid"
                    type="number"
                    min={1}
                    value={v.approvalValidMinutes}
                    onChange={(e) =>
                      setEditing({ ...editing, v: { ...v, approvalValidMinutes: Number(e.target.value) } })
                    }
                  />
                </Field>
                <fieldset className="grid gap-1">
                  <legend className="mb-1 text-sm font-medium">Who may approve</legend>
                  {ROLES.filter((r) => r !== 'viewer').map((r) => (
                    <label key={r} className="flex items-center gap-2 text-sm">
                      <input
                        type="checkbox"
                        className="size-4"
                        checked={v.approverRoles.includes(r)}
                        onChange={(e) =>
                          setEditing({
                            ...editing,
                            v: {
                              ...v,
                              approverRoles: e.target.checked
                                ? [...v.approverRoles, r]
                                : v.approverRoles.filter((x) => x !== r),
                            },
                          })
                        }
                      />
                      {r}
                    </label>
                  ))}
                </fieldset>
                <div className="flex items-center gap-2">
                  <Switch
                    id="p-custom"
                    checked={v.allowCustomCode}
                    onCheckedChange={(c) => setEditing({ ...editing, v: { ...v, allowCustomCode: c } })}
                  />
                  <label htmlFor="p-custom" className="text-sm">
                    Allow custom code
                  </label>
                </div>
              </div>
              {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
              <DialogFooter>
                <Button type="button" variant="outline" onClick={() => setEditing(null)}>
                  Cancel
                </Button>
                <Button type="submit">Save policy</Button>
              </DialogFooter>
            </form>
          ) : null}
        </DialogContent>
      </Dialog>
    </div>
  );
}

export function AdminView() {
  const user = useUser();
  const sp = useSearchParams();
  const router = useRouter();
  const tab = sp.get('tab') ?? 'users';
  if (!canDo(user.role, 'admin')) {
    return (
      <>
        <PageHeader title="Admin" />
        <Alert variant="warning" title="Admins only">
          Your role is {user.role}.
        </Alert>
      </>
    );
  }
  return (
    <>
      <PageHeader
        title="Admin"
        description="Users and roles, agents and join tokens, approval policies, the script library."
      />
      <Tabs value={tab} onValueChange={(t) => router.replace(`/admin?tab=${t}`)}>
        <TabsList aria-label="Admin sections">
          <TabsTrigger value="users">
            <UsersIcon aria-hidden="true" /> Users
          </TabsTrigger>
          <TabsTrigger value="agents">
            <ServerIcon aria-hidden="true" /> Agents
          </TabsTrigger>
          <TabsTrigger value="policies">
            <ShieldIcon aria-hidden="true" /> Policies
          </TabsTrigger>
        </TabsList>
        <TabsContent value="users">
          <UsersTab />
        </TabsContent>
        <TabsContent value="agents">
          <AgentsTab />
        </TabsContent>
        <TabsContent value="policies">
          <PoliciesTab />
        </TabsContent>
      </Tabs>
      <p className="mt-6 text-sm text-muted-foreground">
        <BookOpenIcon aria-hidden="true" className="mr-1 inline size-4" />
        The built-in scripts are listed in the{' '}
        <Link className="underline" href="/scripts">
          script library
        </Link>
        .
      </p>
    </>
  );
}
