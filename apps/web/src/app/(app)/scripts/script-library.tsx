'use client';
import Link from 'next/link';
import { useState } from 'react';
import { PlayIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { CodeEditor } from '../../../components/code-editor';
import { RiskBadge } from '../../../components/status';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardHeader } from '../../../components/ui/card';
import { CodeBlock } from '../../../components/ui/code-block';
import { ErrorState, LoadingRows } from '../../../components/ui/states';
import { useCall } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { cn } from '../../../lib/client/utils';

/** How each script's change is undone, as the library declares it (ScriptSummary.undo). */
const UNDO_LABEL = {
  nothing: 'nothing to undo',
  'auto-restore': 'reversible: restores itself',
  irreversible: 'irreversible',
} as const;
const UNDO_HINT = {
  nothing: 'Reads only: nothing in the target changes.',
  'auto-restore':
    'The target restores the previous state itself after the duration you choose; the approval covers the restore.',
  irreversible: 'What it changes stays changed: nothing restores it.',
} as const;

export function ScriptLibrary() {
  const user = useUser();
  const { data, error, loading, reload } = useCall('listScripts', {});
  const [sel, setSel] = useState<string | null>(null);
  const scripts = data?.scripts ?? [];
  const current = scripts.find((s) => s.id === sel) ?? scripts[0];
  return (
    <>
      <PageHeader
        title="Script library"
        description="Reviewed Python scripts with typed parameters. Parameters travel as data, never as code."
      />
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows rows={6} />
      ) : (
        <div className="grid gap-4 lg:grid-cols-[18rem_minmax(0,1fr)]">
          <nav aria-label="Scripts" className="grid content-start gap-1">
            {scripts.map((s) => (
              <button
                key={s.id}
                type="button"
                aria-current={current?.id === s.id ? 'true' : undefined}
                onClick={() => setSel(s.id)}
                className={cn(
                  'grid gap-0.5 rounded-md border px-3 py-2 text-left text-sm hover:bg-accent focus-visible:outline-2 focus-visible:outline-ring',
                  current?.id === s.id && 'border-primary/50 bg-accent',
                )}
              >
                <span className="font-medium">{s.title}</span>
                <span className="font-mono text-xs text-muted-foreground">{s.id}</span>
              </button>
            ))}
          </nav>
          {current ? (
            <Card>
              <CardHeader className="flex-row flex-wrap items-center gap-2">
                <h2 className="font-semibold">{current.title}</h2>
                <RiskBadge risk={current.risk} />
                {current.readOnly ? (
                  <Badge variant="secondary">read-only</Badge>
                ) : (
                  <Badge variant="warning">changes state</Badge>
                )}
                <Badge
                  variant={current.reversible ? 'secondary' : 'destructive'}
                  data-testid="script-undo"
                  title={UNDO_HINT[current.undo]}
                >
                  {UNDO_LABEL[current.undo]}
                </Badge>
                {current.sensitive ? <Badge variant="warning">output may hold secrets</Badge> : null}
                <Badge variant="outline">v{current.version}</Badge>
                {canDo(user.role, 'request:create') ? (
                  <Button asChild size="sm" className="ml-auto">
                    <Link href={`/requests/new?script=${encodeURIComponent(current.id)}`}>
                      <PlayIcon aria-hidden="true" /> Use in a request
                    </Link>
                  </Button>
                ) : null}
              </CardHeader>
              <CardContent className="grid gap-4">
                <p className="text-sm text-muted-foreground">{current.description}</p>
                <CodeEditor
                  key={current.id}
                  value={current.source}
                  readOnly
                  label={`Source of ${current.id}`}
                  maxHeight="32rem"
                />
                <CodeBlock label="Parameter schema (JSON Schema)" maxHeight="max-h-64">
                  {JSON.stringify(current.paramsSchema, null, 2)}
                </CodeBlock>
              </CardContent>
            </Card>
          ) : null}
        </div>
      )}
    </>
  );
}
