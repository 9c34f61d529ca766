/**
 * pyreach: the operator CLI. Exit codes: 0 succeeded, 1 failed, 2 usage error, 3 refused or denied,
 * 4 still waiting when --wait ran out, 5 partly succeeded. `--json` prints the API's answer as JSON.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';
import type { RequestDetail } from '@pyreach/protocol/api';
import { displayText, encodeBytes } from '@pyreach/protocol/text';
import { TERMINAL_REQUEST_STATES, type RequestState } from '@pyreach/protocol/states';
import { ExecutionOutput, RequestChanged } from '@pyreach/protocol/ui';
import { ApiError, Client } from './client';
import { resolveTarget, storeLogin, UsageError } from './config';
import { typedParams } from './params';

export const EXIT = { ok: 0, failed: 1, usage: 2, denied: 3, waiting: 4, partial: 5 } as const;

const USAGE = `pyreach — Pyreach control plane from the command line

  pyreach login --url URL [--token TOKEN]        store a token (or read it from stdin) in ~/.config/pyreach/token
  pyreach hosts [--selector k=v,...]
  pyreach ps [--selector k=v,...] [--host ID]
  pyreach scripts
  pyreach request create (--script ID [--param k=v ...] [--params-json JSON] | --code-file F)
                         (--pid AGENT:PID:START ... | --selector k=v,...) --reason TEXT [--wait [--timeout S]]
  pyreach request show|watch|cancel ID
  pyreach review ID                              prints the review page (reviews need a person's sign-in)
  pyreach audit search [--action A] [--text T] | audit export [--format jsonl|csv] | audit verify
Every command takes --json. Environment: PYREACH_URL, PYREACH_TOKEN.`;

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  token: { type: 'string' },
  selector: { type: 'string' },
  host: { type: 'string' },
  script: { type: 'string' },
  param: { type: 'string', multiple: true },
  'params-json': { type: 'string' },
  'code-file': { type: 'string' },
  pid: { type: 'string', multiple: true },
  reason: { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  action: { type: 'string' },
  text: { type: 'string' },
  format: { type: 'string' },
  limit: { type: 'string' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const json = (v: unknown) => out(JSON.stringify(v, null, 2));

function labels(sel: string | undefined): Record<string, string> {
  const o: Record<string, string> = {};
  for (const pair of (sel ?? '').split(',').filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new UsageError(`--selector ${pair}: expected key=value`);
    o[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return o;
}

/** A request's end as an exit code (a state another version adds reads by its name). */
export function exitOf(r: Pick<RequestDetail, 'state' | 'executions'>): number {
  const state: string = r.state;
  if (state === 'succeeded') return EXIT.ok;
  if (state === 'partially_succeeded') return EXIT.partial;
  if (state === 'rejected') return EXIT.denied;
  if (state === 'failed') {
    const ok = r.executions.filter((e) => e.state === 'succeeded').length;
    if (ok > 0) return EXIT.partial;
    if (r.executions.length > 0 && r.executions.every((e) => e.state === 'refused')) return EXIT.denied;
    return EXIT.failed;
  }
  if (TERMINAL_REQUEST_STATES.has(r.state)) return EXIT.failed;
  return EXIT.waiting;
}

function printRequest(r: RequestDetail): void {
  out(`request ${r.id}: ${r.state} (${r.approvals}/${r.requiredApprovals} approvals) — ${r.reason}`);
  for (const e of r.executions) {
    out(`  ${e.agentId} pid ${e.pid}: ${e.state}${e.errorCode ? ` ${e.errorCode}` : ''}`);
    if (e.output) out(displayText(e.output).replace(/^/gm, '    '));
    if (e.result !== null && e.result !== undefined) out(`    result: ${JSON.stringify(e.result)}`);
    if (e.errorMessage) out(`    error: ${e.errorMessage}`);
  }
}

/** Whole outputs read at once at most (a request over 1,000 targets is not 1,000 parallel downloads). */
const OUTPUT_READS = 8;

/**
 * The request with every output whole: the API's detail carries a preview of each (`outputPreview`), so the
 * executions whose output goes on past it are read from the download (bytes, back to the safe text the API
 * would have sent). What the CLI prints and its --json stay the whole output, as before previews.
 */
export async function withWholeOutputs(c: Client, r: RequestDetail): Promise<RequestDetail> {
  const executions = r.executions.slice();
  const todo = executions.flatMap((e, i) => (e.outputPreview ? [i] : []));
  const worker = async () => {
    for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
      const e = executions[i]!;
      const res = await c.raw('downloadExecutionOutput', { params: { id: r.id, executionId: e.id } });
      const output = encodeBytes(new Uint8Array(await res.arrayBuffer()));
      executions[i] = { ...e, output, outputPreview: false };
    }
  };
  await Promise.all(Array.from({ length: Math.min(OUTPUT_READS, todo.length) }, worker));
  return { ...r, executions };
}

async function waitFor(c: Client, id: string, timeoutMs: number): Promise<RequestDetail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { request } = await c.call('getRequest', { params: { id } });
    if (TERMINAL_REQUEST_STATES.has(request.state as RequestState) || Date.now() >= deadline) return request;
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(50, deadline - Date.now()))));
  }
}

/** Streams a request's output over the /ui socket until it ends (or the timeout), then shows it. */
async function watch(c: Client, id: string, f: Flags, timeoutMs: number): Promise<number> {
  const socket = io(`${c.baseUrl.replace(/\/$/, '')}/ui`, {
    transports: ['websocket'],
    auth: { token: c.token },
    reconnection: true,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err: Error & { data?: { code?: string; message?: string } }) =>
        reject(
          new ApiError(
            401,
            (err.data?.code as 'TOKEN_INVALID') ?? 'NETWORK',
            err.data?.message ?? err.message,
          ),
        ),
      );
    });
    let ended!: () => void;
    const done = new Promise<void>((r) => (ended = r));
    socket.on('execution:output', (msg: unknown) => {
      const m = ExecutionOutput.safeParse(msg);
      if (!m.success || m.data.requestId !== id) return;
      if (f.json) out(JSON.stringify({ event: 'output', ...m.data }));
      else process.stdout.write(displayText(m.data.chunk));
    });
    socket.on('request:changed', (msg: unknown) => {
      const m = RequestChanged.safeParse(msg);
      if (m.success && m.data.requestId === id && TERMINAL_REQUEST_STATES.has(m.data.state)) ended();
    });
    const ack = await socket.timeout(10_000).emitWithAck('subscribe', { requestId: id });
    if (!(ack as { ok?: boolean }).ok) throw new ApiError(403, 'FORBIDDEN', `cannot watch request ${id}`);
    process.stderr.write(`watching request ${id}\n`);
    // The push ends the wait; a slow poll covers an end pushed before the subscription (or a missed push).
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const now = (await c.call('getRequest', { params: { id } })).request;
      if (TERMINAL_REQUEST_STATES.has(now.state)) break;
      await Promise.race([done, new Promise((r) => setTimeout(r, Math.min(2000, deadline - Date.now())))]);
    }
    const last = (await c.call('getRequest', { params: { id } })).request;
    if (f.json) out(JSON.stringify({ event: 'end', request: await withWholeOutputs(c, last) }));
    else out(`request ${id}: ${last.state}`);
    return exitOf(last);
  } finally {
    socket.close();
  }
}

async function createRequest(c: Client, f: Flags): Promise<number> {
  if (!f.reason) throw new UsageError('request create needs --reason');
  if (Boolean(f.script) === Boolean(f['code-file']))
    throw new UsageError('request create needs exactly one of --script ID and --code-file F');
  let targets;
  if (f.pid?.length) {
    targets = {
      type: 'processes' as const,
      processes: f.pid.map((p) => {
        const [agentId, pid, startTime] = p.split(':');
        if (!agentId || !pid || !/^\d+$/.test(pid) || !startTime || !/^\d+$/.test(startTime))
          throw new UsageError(`--pid ${p}: expected AGENT_ID:PID:START_TIME (see pyreach ps)`);
        return { agentId, pid: Number(pid), startTime };
      }),
    };
  } else if (f.selector) targets = { type: 'selector' as const, labels: labels(f.selector) };
  else throw new UsageError('request create needs --pid or --selector');
  let body;
  if (f.script) {
    const { scripts } = await c.call('listScripts', {});
    const script = scripts.find((s) => s.id === f.script);
    if (!script) throw new UsageError(`no script ${f.script} (see pyreach scripts)`);
    let params: Record<string, unknown> = {};
    if (f['params-json']) {
      try {
        params = JSON.parse(f['params-json']) as Record<string, unknown>;
      } catch {
        throw new UsageError('--params-json: not valid JSON');
      }
    }
    params = { ...params, ...typedParams(script.paramsSchema, f.param ?? []) };
    body = { kind: 'library' as const, scriptId: script.id, params, targets, reason: f.reason };
  } else {
    body = {
      kind: 'custom' as const,
      code: readFileSync(f['code-file'] ?? '', 'utf8'),
      targets,
      reason: f.reason,
    };
  }
  const { request } = await c.call('createRequest', { body });
  if (!f.wait) {
    if (f.json) json({ request });
    else out(`request ${request.id}: ${request.state}`);
    return EXIT.ok;
  }
  if (!f.json) out(`request ${request.id}: ${request.state}; waiting…`);
  const end = await withWholeOutputs(c, await waitFor(c, request.id, timeoutOf(f)));
  if (f.json) json({ request: end });
  else printRequest(end);
  return exitOf(end);
}

function timeoutOf(f: Flags): number {
  const s = Number(f.timeout ?? 600);
  if (!Number.isFinite(s) || s <= 0) throw new UsageError('--timeout: seconds, a positive number');
  return s * 1000;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const f = parsed.values;
  const [cmd, sub, arg] = parsed.positionals;
  if (f.help || !cmd) {
    out(USAGE);
    return cmd || f.help ? EXIT.ok : EXIT.usage;
  }
  if (cmd === 'login') {
    const url = f.url ?? process.env.PYREACH_URL;
    if (!url) throw new UsageError('login needs --url');
    const token = (f.token ?? readFileSync(0, 'utf8')).trim();
    const me = await new Client(url, token).call('me', {});
    const file = storeLogin(process.env, url, token);
    if (f.json) json({ file, user: me.user });
    else out(`signed in as ${me.user.name} (${me.user.role}); token stored in ${file}`);
    return EXIT.ok;
  }
  const target = resolveTarget(process.env);
  const c = new Client(target.url, target.token);
  const needId = () => {
    const id = cmd === 'review' ? sub : arg;
    if (!id) throw new UsageError(`${cmd} ${cmd === 'review' ? '' : sub} needs a request id`);
    return id;
  };
  switch (cmd) {
    case 'hosts': {
      const r = await c.call('listHosts', { query: f.selector ? { labels: f.selector } : {} });
      if (f.json) json(r);
      else
        for (const h of r.hosts)
          out(
            `${h.hostname}\t${h.agent.status}\t${h.processCount} python\t${JSON.stringify(h.agent.labels)}`,
          );
      return EXIT.ok;
    }
    case 'ps': {
      const r = await c.call('listProcesses', {
        query: { ...(f.selector ? { labels: f.selector } : {}), ...(f.host ? { hostId: f.host } : {}) },
      });
      if (f.json) json(r);
      else
        for (const p of r.processes)
          out(
            `${p.agentId}:${p.pid}:${p.startTime}\t${p.hostname}\t${p.pythonVersion ?? '?'}\t${p.cmdline.join(' ')}`,
          );
      return EXIT.ok;
    }
    case 'scripts': {
      const r = await c.call('listScripts', {});
      if (f.json) json({ scripts: r.scripts.map(({ source: _s, ...s }) => s) });
      else for (const s of r.scripts) out(`${s.id}\t${s.risk}\t${s.title}`);
      return EXIT.ok;
    }
    case 'request': {
      if (sub === 'create') return createRequest(c, f);
      if (sub === 'show') {
        const { request: detail } = await c.call('getRequest', { params: { id: needId() } });
        const request = await withWholeOutputs(c, detail);
        if (f.json) json({ request });
        else printRequest(request);
        return EXIT.ok;
      }
      if (sub === 'watch') return watch(c, needId(), f, timeoutOf(f));
      if (sub === 'cancel') {
        const r = await c.call('cancelRequest', { params: { id: needId() }, body: { reason: f.reason } });
        if (f.json) json(r);
        else out(`request ${r.request.id}: ${r.request.state}`);
        return EXIT.ok;
      }
      throw new UsageError('request create|show|watch|cancel');
    }
    case 'review': {
      // Reviews need a person with a recent sign-in; a token never can. Point at the page.
      const url = `${c.baseUrl.replace(/\/$/, '')}/requests/${encodeURIComponent(needId())}`;
      if (f.json) json({ url });
      else out(`Reviews need a person signed in recently (API tokens never review). Open: ${url}`);
      return EXIT.denied;
    }
    case 'audit': {
      if (sub === 'search') {
        const r = await c.call('queryAudit', {
          query: { action: f.action, text: f.text, limit: f.limit ? Number(f.limit) : undefined },
        });
        if (f.json) json(r);
        else
          for (const e of r.events)
            out(`${e.seq}\t${e.at}\t${e.actorType}:${e.actorName}\t${e.action}\t${e.subjectId ?? ''}`);
        return EXIT.ok;
      }
      if (sub === 'export') {
        const format = f.format ?? 'jsonl';
        if (format !== 'jsonl' && format !== 'csv') throw new UsageError('--format jsonl|csv');
        const res = await c.raw('exportAudit', { query: { format, action: f.action } });
        for await (const chunk of res.body ?? []) process.stdout.write(chunk);
        return EXIT.ok;
      }
      if (sub === 'verify') {
        const r = await c.call('verifyAudit', {});
        if (f.json) json(r);
        else
          out(
            r.valid
              ? `audit chain valid: ${r.count} events`
              : `audit chain BROKEN at ${r.brokenAt}: ${r.reason}`,
          );
        return r.valid ? EXIT.ok : EXIT.failed;
      }
      throw new UsageError('audit search|export|verify');
    }
    default:
      throw new UsageError(`unknown command ${cmd}\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`pyreach: ${err.message}\n`);
      process.exitCode = EXIT.usage;
    } else if (err instanceof ApiError) {
      process.stderr.write(`pyreach: ${err.code}: ${err.message}\n`);
      process.exitCode =
        err.status === 401 || err.status === 403
          ? EXIT.denied
          : err.code === 'VALIDATION'
            ? EXIT.usage
            : EXIT.failed;
    } else {
      process.stderr.write(`pyreach: ${(err as Error).message ?? String(err)}\n`);
      process.exitCode = EXIT.failed;
    }
  },
);
